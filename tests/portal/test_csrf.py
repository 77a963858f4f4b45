"""Every form POST on the site is refused without a CSRF token, and accepted with the page's token."""

import re

import pytest
from django.test import Client

from portal.accounts.services import key_create
from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def posts(user) -> list[tuple[str, dict]]:
    key, _ = key_create(owner=user, name="csrf")
    return [
        ("/keys", {"name": "x", "spend_reset": "never"}),
        (f"/keys/{key.pk}/revoke", {}),
        ("/billing/redeem", {"code": "ISP-AAAA"}),
        ("/billing/checkout", {"preset": "10"}),
        (
            "/account",
            {
                "old_password": PASSWORD,
                "new_password1": "n3w-passphrase!",
                "new_password2": "n3w-passphrase!",
            },
        ),
        ("/logout", {}),
    ]


def test_signed_in_posts_without_a_token_are_refused_and_change_nothing(user, client_of):
    client = client_of(user, csrf=True)
    for path, data in posts(user):
        assert client.post(path, data).status_code == 403, path
    assert user.api_keys.count() == 1 and user.api_keys.get().revoked_at is None
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize("path", ["/login", "/signup", "/password-reset"])
def test_anonymous_posts_without_a_token_are_refused(path, user):
    data = {"username": user.email, "email": "new@example.com", "password": PASSWORD}
    assert Client(enforce_csrf_checks=True).post(path, data).status_code == 403


def test_the_pages_token_is_accepted(user, client_of):
    client = client_of(user, csrf=True)
    page = client.get("/keys").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(
        "/keys", {"name": "with-token", "spend_reset": "never", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert user.api_keys.filter(name="with-token").exists()


def test_setting_a_new_password_from_a_reset_link_needs_the_token(user):
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    client = Client(enforce_csrf_checks=True)
    link = f"/password-reset/{urlsafe_base64_encode(force_bytes(user.pk))}/{default_token_generator.make_token(user)}"
    set_url = client.get(link).url  # the token moves into the session; the form lives at .../set-password
    data = {"new_password1": "fresh-passphrase-81", "new_password2": "fresh-passphrase-81"}
    assert client.post(set_url, data).status_code == 403
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', client.get(set_url).content.decode()
    ).group(1)
    assert client.post(set_url, {**data, "csrfmiddlewaretoken": token}).status_code == 302
