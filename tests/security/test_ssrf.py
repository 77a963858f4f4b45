"""Server-side request forgery: the gateway calls only the URLs the operator configured.

An upstream that answers with a redirect is not followed (it could point the gateway, and the provider's secret,
at an internal service): the route counts as failed. The catalog import refuses any base URL that is not
http(s). (The admin's provider form is covered by the engineers building it.)
"""

import pytest
import requests

from proxy.catalog.importer import CatalogError, catalog_import
from proxy.catalog.models import Provider
from tests.conftest import unique, write_catalog
from tests.security.conftest import import_model, provider_on


def chat(gw, raw: str, model: str, *, stream: bool) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "follow me"}], "stream": stream}
    return requests.post(
        f"{gw.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {raw}"}, timeout=30
    )


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_upstream_redirect_is_not_followed_and_answers_502(
    loud_gateway, probe_upstream, trap, make_key, tmp_path, status, stream
):
    provider = provider_on(probe_upstream, api_key_env="TEST_UPSTREAM_KEY")
    model = import_model(tmp_path / "r.toml", [provider], [(provider["name"], f"redirect-{status}")])
    _, raw = make_key(rpm_limit=1000, rpd_limit=1000)
    trap.clear()
    answer = chat(loud_gateway, raw, model, stream=stream)
    assert probe_upstream.count(prefix=provider["name"]) == 1  # the route was tried, once
    assert trap.requests == [], "the gateway followed a redirect"
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "bad_gateway")
    assert "trap" not in answer.text and str(trap.port) not in answer.text


def test_a_redirecting_route_fails_over_to_the_next_without_touching_the_redirect_target(
    loud_gateway, probe_upstream, upstream, trap, make_key, tmp_path
):
    first, second = provider_on(probe_upstream), provider_on(upstream)
    model = import_model(
        tmp_path / "r.toml", [first, second], [(first["name"], "redirect-302"), (second["name"], "echo")]
    )
    _, raw = make_key(rpm_limit=1000, rpd_limit=1000)
    trap.clear()
    answer = chat(loud_gateway, raw, model, stream=False)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "You said: follow me"
    assert trap.requests == []


@pytest.mark.parametrize(
    "base_url",
    [
        "file:///etc/passwd",
        "ftp://example.com/v1",
        "gopher://127.0.0.1:6379/_INFO",
        "redis://127.0.0.1:6379/0",
        "unix:///var/run/docker.sock",
        "javascript:alert(1)",
        "data:text/plain,hello",
        "http:///v1",
        "//example.com/v1",
        "127.0.0.1:8000/v1",
    ],
)
def test_the_catalog_import_refuses_a_base_url_that_is_not_http_or_https(live_db, tmp_path, base_url):
    name = unique("ssrf")
    model = {
        "id": unique("ssrf-m"),
        "owned_by": "test",
        "routes": [{"provider": name, "upstream_model": "echo"}],
    }
    path = write_catalog(tmp_path / "bad.toml", [{"name": name, "base_url": base_url}], [model])
    with pytest.raises(CatalogError, match=r"providers\[0\]\.base_url: must be an http:// or https:// URL"):
        catalog_import(path=path)
    assert not Provider.objects.filter(name=name).exists()


def test_the_catalog_import_accepts_http_and_https(live_db, tmp_path):
    names = [unique("ok"), unique("ok")]
    providers = [
        {"name": names[0], "base_url": "http://127.0.0.1:9/v1"},
        {"name": names[1], "base_url": "https://localhost:9/v1"},
    ]
    models = [
        {
            "id": unique("ok-m"),
            "owned_by": "test",
            "routes": [{"provider": n, "upstream_model": "x"} for n in names],
        }
    ]
    catalog_import(path=write_catalog(tmp_path / "ok.toml", providers, models))
    assert set(Provider.objects.filter(name__in=names).values_list("name", flat=True)) == set(names)
