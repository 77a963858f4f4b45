"""The user and key admin: the lists operators read, and the audited actions that change money and access."""

from decimal import Decimal

from billing.models import LedgerEntry
from billing.services import account_for, credits_grant
from portal.accounts.models import ApiKey, AuditEntry, User
from portal.accounts.notify import versions_sync
from tests.admin.conftest import messages_of, run_action

USERS = "/admin/portal/user/"
KEYS = "/admin/portal/apikey/"


def test_the_user_list_shows_money_tier_keys_and_activity_and_searches_by_email(ops, make_user, make_key):
    user = make_user()
    credits_grant(account=account_for(user=user), amount=Decimal("12.5"), reason="x", actor=None)
    make_key(owner=user)
    revoked, _ = make_key(owner=user)
    revoked.revoked_at = revoked.created_at
    revoked.save()
    page = ops.get(USERS, {"q": user.email})
    assert page.status_code == 200
    row = page.context["cl"].result_list.get()
    assert row == user and row.live_keys == 1
    html = page.content.decode()
    assert "12.50" in html and "free" in html  # bought nothing, so the free tier
    assert page.context["cl"].result_count == 1


def test_an_operator_can_create_a_user_with_an_account(ops):
    answer = ops.post(
        f"{USERS}add/",
        {
            "email": "New.Person@Example.com",
            "password1": "a long pass phrase 42",
            "password2": "a long pass phrase 42",
        },
    )
    assert answer.status_code == 302, answer.content
    user = User.objects.get(email="new.person@example.com")
    assert account_for(user=user).balance == 0
    assert AuditEntry.objects.filter(action="user.create", target_id=str(user.pk)).exists()


def test_a_deduction_is_a_negative_ledger_entry_naming_the_operator(ops, operator, make_user):
    user = make_user()
    credits_grant(account=account_for(user=user), amount=Decimal(10), reason="start", actor=None)
    run_action(ops, USERS, "deduct_credits", [user], amount="3.25", reason="refund reversed")
    entry = LedgerEntry.objects.get(account__user=user, kind="deduct")
    assert (entry.amount, entry.memo, entry.actor) == (Decimal("-3.25"), "refund reversed", operator)
    assert account_for(user=user).balance == Decimal("6.75")
    audit = AuditEntry.objects.filter(action="credits.deduct", actor=operator).latest("pk")
    assert Decimal(audit.before["balance"]) == 10 and Decimal(audit.after["balance"]) == Decimal("6.75")


def test_a_deduction_beyond_the_balance_is_refused_with_a_message(ops, make_user):
    user = make_user()
    answer = run_action(ops, USERS, "deduct_credits", [user], amount="1", reason="oops")
    assert answer.status_code == 302
    assert any("cannot deduct" in m for m in messages_of(ops.get(USERS)))
    assert not LedgerEntry.objects.filter(account__user=user).exists()


def test_credit_actions_need_a_reason_and_a_positive_amount(ops, make_user):
    user = make_user()
    for form in (
        {"amount": "5", "reason": ""},
        {"amount": "-5", "reason": "x"},
        {"amount": "0", "reason": "x"},
    ):
        answer = run_action(ops, USERS, "grant_credits", [user], **form)
        assert answer.status_code == 200 and answer.context["form"].errors, form  # the form again
    assert not LedgerEntry.objects.filter(account__user=user).exists()
    first = ops.post(USERS, {"action": "grant_credits", "_selected_action": [user.pk]})
    assert first.status_code == 200 and b"Grant credits" in first.content  # the intermediate page


def test_per_user_limits_are_audited_and_reach_the_gateways(ops, operator, make_user):
    user = make_user()
    before = versions_sync(0, user.pk)[1]
    run_action(ops, USERS, "set_limits", [user], rpm_limit="7", rpd_limit="")
    user.refresh_from_db()
    assert (user.rpm_limit, user.rpd_limit) == (7, None)
    assert versions_sync(0, user.pk)[1] > before
    audit = AuditEntry.objects.get(action="user.limits", target_id=str(user.pk))
    assert (audit.actor, audit.before, audit.after) == (operator, {"rpm_limit": None}, {"rpm_limit": 7})


def test_editing_access_in_the_user_form_is_audited_and_reaches_the_gateways(ops, operator, make_user):
    user = make_user()
    before = versions_sync(0, user.pk)[1]
    form = ops.get(f"{USERS}{user.pk}/change/").context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data.update({"is_active": "", "rpd_limit": "99", "groups": [], "user_permissions": []})
    data.pop("last_login", None)
    data.pop("date_joined", None)
    answer = ops.post(f"{USERS}{user.pk}/change/", data)
    assert answer.status_code == 302, answer.context["adminform"].form.errors if answer.context else answer
    user.refresh_from_db()
    assert not user.is_active and user.rpd_limit == 99
    assert versions_sync(0, user.pk)[1] > before
    audit = AuditEntry.objects.get(action="user.change", target_id=str(user.pk))
    assert audit.before == {"is_active": True, "rpd_limit": None} and audit.after == {
        "is_active": False,
        "rpd_limit": 99,
    }


def test_users_are_never_deleted_in_the_admin(ops, make_user):
    user = make_user()
    assert ops.get(f"{USERS}{user.pk}/delete/").status_code == 403


def test_the_key_list_shows_keys_without_their_hash_and_filters_by_status(ops, make_key):
    key, raw = make_key(rpm_limit=5)
    revoked, revoked_raw = make_key(owner=key.owner, name="old")
    run_action(ops, KEYS, "revoke_keys", [revoked])
    page = ops.get(KEYS, {"q": key.owner.email})
    html = page.content.decode()
    assert key.prefix in html and "5 RPM" in html
    for secret in (raw, key.hash, revoked_raw, revoked.hash):
        assert secret not in html
    change = ops.get(f"{KEYS}{key.pk}/change/").content.decode()
    assert key.hash not in change and raw not in change
    active = ops.get(KEYS, {"q": key.owner.email, "status": "active"}).context["cl"].result_list
    assert list(active) == [key]
    gone = ops.get(KEYS, {"q": key.owner.email, "status": "revoked"}).context["cl"].result_list
    assert list(gone) == [revoked]
    assert ops.get(f"{KEYS}add/").status_code == 403  # keys are minted by their owners, who see them once


def test_editing_a_key_is_audited_and_reaches_the_gateways(ops, operator, make_key):
    key, _ = make_key()
    before = versions_sync(key.pk, key.owner_id)[0]
    form = ops.get(f"{KEYS}{key.pk}/change/").context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields}
    data.update({"rpm_limit": "3", "disabled": "on", "allowed_models": "[]", "spend_limit": "2.5"})
    answer = ops.post(f"{KEYS}{key.pk}/change/", data)
    assert answer.status_code == 302, answer.context["adminform"].form.errors if answer.context else answer
    key.refresh_from_db()
    assert (key.rpm_limit, key.disabled, key.spend_limit) == (3, True, Decimal("2.5"))
    assert versions_sync(key.pk, key.owner_id)[0] > before
    audit = AuditEntry.objects.get(action="key.change", target_id=str(key.pk))
    assert audit.actor == operator
    assert audit.after == {"rpm_limit": 3, "disabled": True, "spend_limit": "2.500000000000"}
    run_action(ops, KEYS, "enable_keys", [key])
    assert not ApiKey.objects.get(pk=key.pk).disabled


def test_a_revoked_key_is_read_only(ops, make_key):
    key, _ = make_key()
    run_action(ops, KEYS, "revoke_keys", [key])
    run_action(ops, KEYS, "revoke_keys", [key])  # twice changes nothing
    assert AuditEntry.objects.filter(action="key.revoke", target_id=str(key.pk)).count() == 1
    form = ops.get(f"{KEYS}{key.pk}/change/").context["adminform"].form
    assert "rpm_limit" not in form.fields and "disabled" not in form.fields
    run_action(ops, KEYS, "enable_keys", [key])
    assert ApiKey.objects.get(pk=key.pk).status == "revoked"


def test_an_operator_can_not_disable_their_own_account(ops, operator):
    run_action(ops, USERS, "disable_accounts", [operator])
    operator.refresh_from_db()
    assert operator.is_active
    assert any("can't disable your own account" in m for m in messages_of(ops.get(USERS)))
