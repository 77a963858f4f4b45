"""Landing, models and docs: public, with the site's base URL, and never a full key."""

import re

import pytest
from django.test import Client

from portal.accounts.services import key_create

pytestmark = pytest.mark.django_db


def test_the_landing_page_explains_the_service_and_links_onward(settings, models):
    settings.PUBLIC_BASE_URL = "https://api.example.test"
    body = Client().get("/").content.decode()
    assert "https://api.example.test/v1" in body
    assert 'href="/signup"' in body and 'href="/models"' in body and 'href="/docs"' in body
    quick_start = re.search(r'<pre id="quickstart"><code>(.*?)</code></pre>', body, re.S).group(1)
    assert len(quick_start.strip().splitlines()) == 3
    assert "from openai import OpenAI" in quick_start and models["free"].name in quick_start


def test_the_models_page_is_public_with_prices_free_badges_context_and_owner(models):
    response = Client().get("/models")
    assert response.status_code == 200
    body = response.content.decode()
    paid = re.search(rf"{models['paid'].name}.*?</tr>", body, re.S).group(0)
    assert "$0.27" in paid and "$1.10" in paid and "128,000 tokens" in paid and "acme" in paid
    assert "Free" not in paid
    free = re.search(rf"{models['free'].name}.*?</tr>", body, re.S).group(0)
    assert ">Free<" in free and "32,768 tokens" in free
    assert models["hidden"].name not in body  # disabled models are not offered


def test_the_docs_cover_the_whole_api_with_the_public_base_url(settings, models):
    settings.PUBLIC_BASE_URL = "https://api.example.test"
    body = Client().get("/docs").content.decode()
    for topic in ["Authentication", "List models", "Chat completions", "Streaming", "Errors", "Rate limits",
                  "Python (OpenAI SDK)", "Python, streaming", "JavaScript (Node.js)", "curl",
                  "Claude clients (Messages)", "Claude Code", "Python (Anthropic SDK)"]:  # fmt: skip
        assert topic in body, topic
    for status in ["400", "401", "402", "403", "404", "413", "429", "500", "502", "503", "504"]:
        assert f"<strong>{status}</strong>" in body, status
    for header in ["X-RateLimit-Limit-RPM", "X-RateLimit-Limit-RPD", "X-RateLimit-Remaining-RPM",
                   "X-RateLimit-Remaining-RPD", "Retry-After", "x-should-retry"]:  # fmt: skip
        assert header in body, header
    assert '"error": {' in body and '"type": "rate_limit_error"' in body
    # Every example points at the public base URL; no other host appears in the examples.
    examples = re.findall(r"<pre id=\"ex-[a-z-]+\"><code>(.*?)</code></pre>", body, re.S)
    assert len(examples) >= 10
    urls = set(re.findall(r"https?://[^\s\"'\\]+", " ".join(examples)))
    assert urls == {
        "https://api.example.test",
        "https://api.example.test/v1",
        "https://api.example.test/v1/chat/completions",
        "https://api.example.test/v1/models",
    }  # fmt: skip (the root is the Anthropic SDK's)
    assert "sk-your-api-key" in body


def test_signed_in_docs_offer_a_key_prefix_as_a_hint_and_never_the_key(user, client_of):
    key, raw = key_create(owner=user, name="laptop")
    client = client_of(user)
    plain = client.get("/docs").content.decode()
    assert f'<option value="{key.pk}">laptop ({key.prefix}…)</option>' in plain
    hinted = client.get(f"/docs?key={key.pk}").content.decode()
    assert f"Bearer {key.prefix}..." in hinted and "sk-your-api-key" not in hinted.split("</select>")[1]
    assert raw not in hinted and raw[len(key.prefix) :] not in hinted


def test_the_docs_never_hint_another_users_key(user, other_user, client_of):
    theirs, _ = key_create(owner=other_user, name="theirs")
    body = client_of(user).get(f"/docs?key={theirs.pk}").content.decode()
    assert theirs.prefix not in body and "sk-your-api-key" in body


@pytest.mark.parametrize("path", ["/", "/models", "/docs", "/login", "/signup", "/password-reset"])
def test_public_pages_need_no_login(path):
    assert Client().get(path).status_code == 200


@pytest.mark.parametrize(
    "path", ["/dashboard", "/keys", "/billing", "/usage", "/usage/export.csv", "/account"]
)
def test_private_pages_send_strangers_to_the_login(path):
    response = Client().get(path)
    assert response.status_code == 302 and response.url.startswith("/login?next=")


def test_every_page_has_the_stylesheet_a_skip_link_and_labelled_inputs(user, client_of, models):
    client = client_of(user)
    for path in ["/dashboard", "/keys", "/billing", "/usage", "/models", "/docs", "/account"]:
        body = client.get(path).content.decode()
        assert "/static/app.css" in body and 'href="#main"' in body, path
        for input_id in re.findall(r'<(?:input|select) [^>]*id="([a-z_0-9-]+)"', body):
            assert f'for="{input_id}"' in body, (path, input_id)
