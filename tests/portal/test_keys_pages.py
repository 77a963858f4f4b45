"""The keys page: list, create (the full key shown exactly once), revoke, and other users' keys."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portal.accounts.models import ApiKey
from portal.accounts.services import key_create

pytestmark = pytest.mark.django_db


def create(client, **data):
    return client.post("/keys", {"name": "my app", "spend_reset": "never", **data})


def test_a_new_account_sees_the_create_form_open_and_an_empty_state(user, client_of):
    body = client_of(user).get("/keys").content.decode()
    assert '<details class="card" id="create" open>' in body
    assert "No keys yet" in body


def test_creating_a_key_shows_it_once_with_a_copy_button_and_a_warning(user, client_of, models):
    client = client_of(user)
    in_30_days = (timezone.now().date() + timedelta(days=30)).isoformat()
    response = create(client, name="backend", allowed_models=[models["free"].name], spend_limit="12.50",
                      spend_reset="monthly", expires_on=in_30_days)  # fmt: skip
    assert response.status_code == 302 and response.url == "/keys"
    key = ApiKey.objects.get(owner=user)
    assert key.name == "backend" and key.allowed_models == [models["free"].name]
    assert key.spend_limit == Decimal("12.50") and key.spend_reset == "monthly"
    assert key.expires_at.date() == timezone.now().date() + timedelta(days=30)

    first = client.get("/keys")
    body = first.content.decode()
    raw = first.context["new_key"]["raw"]
    assert raw.startswith(key.prefix) and len(raw) == 46
    assert f'<code id="new-key-value">{raw}</code>' in body
    assert 'data-copy-target="new-key-value"' in body
    assert "This is the only time the full key is shown" in body
    assert "no-store" in first["Cache-Control"]

    again = client.get("/keys").content.decode()
    assert raw not in again and key.prefix in again
    for path in [
        "/dashboard",
        "/usage",
        "/billing",
        "/docs",
        f"/docs?key={key.pk}",
        "/models",
        "/",
        "/account",
    ]:
        assert raw not in client.get(path).content.decode(), path


def test_the_new_key_is_never_on_another_page_even_before_the_keys_page(user, client_of):
    client = client_of(user)
    create(client)
    raw = client.session["new_key"]["raw"]
    for path in ["/dashboard", "/usage", "/billing", "/docs", "/models"]:
        assert raw not in client.get(path).content.decode(), path
    assert raw in client.get("/keys").content.decode()
    assert "new_key" not in client.session


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "Give the key a name"),
        ({"name": "x" * 65}, "name", "at most 64 characters"),
        ({"expires_on": "2001-01-01"}, "expires_on", "Pick an expiry date after today"),
        ({"expires_on": "next week"}, "expires_on", "YYYY-MM-DD"),
        ({"spend_limit": "0"}, "spend_limit", "at least 0.01 USD"),
        ({"spend_limit": "1.234"}, "spend_limit", "2 decimal places"),
        ({"spend_limit": "lots"}, "spend_limit", "number of dollars"),
        ({"allowed_models": ["no-such-model"]}, "allowed_models", "Select a valid choice"),
    ],
)
def test_create_errors_say_what_to_fix_and_create_nothing(user, client_of, data, field, message):
    response = create(client_of(user), **data)
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert 'id="create" open' in response.content.decode()
    assert not ApiKey.objects.filter(owner=user).exists()


def test_the_list_shows_name_prefix_dates_status_and_limits(user, client_of, models):
    active, _ = key_create(owner=user, name="active-one", spend_limit=Decimal(5), spend_reset="daily")
    ApiKey.objects.filter(pk=active.pk).update(last_used_at=timezone.now() - timedelta(hours=3))
    key_create(owner=user, name="expired-one", expires_at=timezone.now() - timedelta(days=1))
    revoked, _ = key_create(owner=user, name="revoked-one", allowed_models=[models["free"].name])
    revoked.revoked_at = timezone.now()
    revoked.save()
    body = client_of(user).get("/keys").content.decode()
    for text in ["active-one", active.prefix, "3\xa0hours ago", "Active", "Expired", "Revoked", "Never",
                 "20/min · 50/day", "$5.00 daily", "1 model", "All models"]:  # fmt: skip
        assert text in body, text
    assert body.count(">Revoke</a>") == 2  # revoked keys have nothing left to revoke


def test_revoke_asks_first_then_works_at_once(user, client_of):
    key, _ = key_create(owner=user, name="doomed")
    client = client_of(user)
    confirm = client.get(f"/keys/{key.pk}/revoke")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None  # looking at the question changes nothing
    response = client.post(f"/keys/{key.pk}/revoke", follow=True)
    assert "is revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.status == "revoked"


def test_another_users_key_urls_are_404_and_their_keys_are_not_listed(user, other_user, client_of):
    theirs, _ = key_create(owner=other_user, name="their-secret-key")
    client = client_of(user)
    assert client.get(f"/keys/{theirs.pk}/revoke").status_code == 404
    assert client.post(f"/keys/{theirs.pk}/revoke").status_code == 404
    assert client.get("/keys/999999999/revoke").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    body = client.get("/keys").content.decode()
    assert "their-secret-key" not in body and theirs.prefix not in body
