"""Sign up, log in (with throttling), log out, password reset by email and password change."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from tests.conftest import unique
from tests.portal.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def new_client(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def address() -> str:
    n = int(unique("ip").split("-")[1])
    return f"172.16.{n // 250 % 250}.{n % 250 + 1}"


def test_signing_up_creates_the_account_signs_in_and_lands_on_the_empty_dashboard():
    client = new_client(address())
    email = f"{unique('new')}@Example.com"
    response = client.post("/signup", {"email": email, "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/dashboard"
    user = get_user_model().objects.get(email=email.lower())
    assert user.check_password(PASSWORD) and hasattr(user, "account")
    body = response.content.decode()
    assert "Create your first API key" in body and "Welcome!" in body


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "", "password": PASSWORD}, "email", "Enter your email address."),
        ({"email": "not-an-email", "password": PASSWORD}, "email", "Enter a valid email address"),
        ({"email": "x@example.com", "password": ""}, "password", "Choose a password."),
        ({"email": "x@example.com", "password": "short1"}, "password", "at least 8 characters"),
        ({"email": "x@example.com", "password": "password123"}, "password", "too common"),
        ({"email": "x@example.com", "password": "83749201938"}, "password", "entirely numeric"),
    ],
)
def test_sign_up_errors_say_what_to_fix(data, field, message):
    response = Client().post("/signup", data)
    assert response.status_code == 200
    form = response.context["form"]
    assert any(message in e for e in form.errors[field]), form.errors
    body = response.content.decode()
    assert message in body.replace("&#x27;", "'")
    assert f'id="id_{field}_error"' in body  # linked to its input for screen readers
    assert not get_user_model().objects.filter(email="x@example.com").exists()


def test_a_password_like_the_email_is_refused():
    response = Client().post("/signup", {"email": "janedoe.smith@example.com", "password": "janedoe.smith"})
    assert "too similar to the email" in str(response.context["form"].errors["password"])


def test_an_email_already_registered_is_refused_whatever_its_case(user):
    response = Client().post("/signup", {"email": user.email.upper(), "password": PASSWORD})
    assert "already exists" in str(response.context["form"].errors["email"])
    assert "reset your password" in response.content.decode()


def test_every_input_has_a_label():
    for path in ["/signup", "/login", "/password-reset"]:
        body = Client().get(path).content.decode()
        inputs = re.findall(r'<input [^>]*id="(id_[a-z_0-9]+)"', body)
        assert inputs, path
        for input_id in inputs:
            assert f'for="{input_id}"' in body, (path, input_id)


def test_log_in_with_any_case_of_the_email_and_log_out(user):
    client = new_client(address())
    response = client.post("/login", {"username": user.email.upper(), "password": PASSWORD})
    assert response.status_code == 302 and response.url == "/dashboard"
    assert client.get("/dashboard").status_code == 200
    assert client.get("/logout").status_code == 405  # logging out takes a POST (a link can't log you out)
    assert client.post("/logout").status_code == 302
    assert client.get("/dashboard").url.startswith("/login")


def test_a_wrong_password_says_what_to_do(user):
    response = new_client(address()).post("/login", {"username": user.email, "password": "wrong-password"})
    assert response.status_code == 200
    assert "don&#x27;t match an account" in response.content.decode()
    assert "reset your password" in response.content.decode()


def test_pages_need_a_login_and_come_back_after_it(user):
    client = new_client(address())
    response = client.get("/keys")
    assert response.status_code == 302 and response.url == "/login?next=/keys"
    response = client.post(
        "/login?next=/keys", {"username": user.email, "password": PASSWORD, "next": "/keys"}
    )
    assert response.url == "/keys"


def test_repeated_failures_lock_the_account_from_every_address(user, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        new_client(address()).post("/login", {"username": user.email, "password": "wrong-password"})
    # Even the right password, from a fresh address, is refused while the account is locked.
    response = new_client(address()).post("/login", {"username": user.email, "password": PASSWORD})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Too many failed sign-in attempts for this account" in body
    assert "Try again in 15 minutes" in body
    assert "_auth_user_id" not in response.client.session
    # Another account is not affected.
    from billing.services import customer_create

    other = customer_create(email=f"{unique('bob')}@example.com", password=PASSWORD)
    assert (
        new_client(address()).post("/login", {"username": other.email, "password": PASSWORD}).status_code
        == 302
    )


def test_repeated_failures_from_one_address_lock_that_address_only(user, settings):
    attacker = address()
    for i in range(settings.LOGIN_FAILURES_PER_IP):
        new_client(attacker).post(
            "/login", {"username": f"victim{i}-{unique('v')}@example.com", "password": "x"}
        )
    response = new_client(attacker).post("/login", {"username": user.email, "password": PASSWORD})
    assert "Too many failed sign-in attempts from your network" in response.content.decode()
    assert (
        new_client(address()).post("/login", {"username": user.email, "password": PASSWORD}).status_code
        == 302
    )


def test_a_success_clears_the_account_counter(user, settings):
    here = address()
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT - 1):
        new_client(here).post("/login", {"username": user.email, "password": "wrong-password"})
    assert new_client(here).post("/login", {"username": user.email, "password": PASSWORD}).status_code == 302
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT - 1):
        new_client(here).post("/login", {"username": user.email, "password": "wrong-password"})
    assert new_client(here).post("/login", {"username": user.email, "password": PASSWORD}).status_code == 302


def test_password_reset_by_email(user):
    client = new_client(address())
    response = client.post("/password-reset", {"email": user.email})
    assert response.status_code == 302 and response.url == "/password-reset/sent"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email] and "Reset your Inference Space password" in message.subject
    link = re.search(r"http://testserver(/password-reset/\S+)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    mismatch = client.post(set_url, {"new_password1": "another-passphrase-77", "new_password2": "different"})
    assert "don&#x27;t match" in mismatch.content.decode()
    done = client.post(
        set_url, {"new_password1": "another-passphrase-77", "new_password2": "another-passphrase-77"}
    )
    assert done.url == "/password-reset/complete"
    user.refresh_from_db()
    assert user.check_password("another-passphrase-77")
    # The link works once.
    assert "This link no longer works" in client.get(link, follow=True).content.decode()


def test_password_reset_for_an_unknown_email_sends_nothing_and_says_the_same():
    response = new_client(address()).post("/password-reset", {"email": f"{unique('nobody')}@example.com"})
    assert response.url == "/password-reset/sent" and mail.outbox == []


def test_change_password(user, client_of):
    client = client_of(user)
    wrong = client.post(
        "/account",
        {"old_password": "nope", "new_password1": "brand-new-pass-99", "new_password2": "brand-new-pass-99"},
    )
    assert "Your current password is not right" in wrong.content.decode()
    assert "Current password" in wrong.content.decode() and "<ul>" not in wrong.content.decode()
    empty = client.post("/account", {})
    assert "Enter your current password." in empty.content.decode()
    ok = client.post(
        "/account",
        {
            "old_password": PASSWORD,
            "new_password1": "brand-new-pass-99",
            "new_password2": "brand-new-pass-99",
        },
        follow=True,
    )
    assert "Your password is changed" in ok.content.decode()
    assert ok.redirect_chain[-1][0] == "/account"
    user.refresh_from_db()
    assert user.check_password("brand-new-pass-99")
    assert client.get("/dashboard").status_code == 200  # still signed in here


def test_a_password_reset_lifts_the_account_lock_as_the_message_promises(user, settings):
    for _ in range(settings.LOGIN_FAILURES_PER_ACCOUNT):
        new_client(address()).post("/login", {"username": user.email, "password": "wrong-password"})
    client = new_client(address())
    assert (
        "Too many failed"
        in client.post("/login", {"username": user.email, "password": PASSWORD}).content.decode()
    )
    client.post("/password-reset", {"email": user.email})
    link = re.search(r"http://testserver(/password-reset/\S+)", mail.outbox[0].body).group(1)
    set_url = client.get(link, follow=True).redirect_chain[-1][0]
    client.post(set_url, {"new_password1": "after-the-lock-77", "new_password2": "after-the-lock-77"})
    response = client.post("/login", {"username": user.email, "password": "after-the-lock-77"})
    assert response.status_code == 302 and response.url == "/dashboard"


def test_behind_a_proxy_the_address_the_proxy_saw_is_counted(user, settings):
    settings.LOGIN_TRUST_X_FORWARDED_FOR = True
    proxy, attacker = address(), address()
    for i in range(settings.LOGIN_FAILURES_PER_IP):
        Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"1.2.3.{i}, {attacker}").post(
            "/login", {"username": f"{unique('v')}@example.com", "password": "x"}
        )
    # The same proxy, another client behind it: not locked out. The attacker's own address is.
    ok = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=address())
    assert ok.post("/login", {"username": user.email, "password": PASSWORD}).status_code == 302
    spoofed = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"9.9.9.9, {attacker}")
    assert (
        "from your network"
        in spoofed.post("/login", {"username": user.email, "password": PASSWORD}).content.decode()
    )
