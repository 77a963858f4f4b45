"""The money and usage admin: redemption code batches, usage records, rollups and the overview page."""

import csv
import io
import uuid
from decimal import Decimal

from django.utils import timezone

from billing.models import DailyUsage, Purchase, ReconcileRun, RedemptionCode, UsageRecord
from billing.services import account_for, code_redeem
from portal.accounts.models import AuditEntry
from proxy.catalog.models import Model
from tests.admin.conftest import run_action
from tests.conftest import unique

CODES = "/admin/billing/redemptioncode/"


def test_codes_are_generated_in_a_batch_through_a_form_and_audited(ops, operator):
    assert b"Generate codes" in ops.get(CODES).content
    page = ops.get(f"{CODES}generate/")
    assert page.status_code == 200 and b'name="count"' in page.content
    batch = unique("batch")
    answer = ops.post(f"{CODES}generate/", {"amount": "2.50", "count": "5", "batch": batch})
    assert answer.status_code == 302
    codes = RedemptionCode.objects.filter(batch=batch)
    assert codes.count() == 5 and {c.amount for c in codes} == {Decimal("2.5")}
    assert {c.created_by for c in codes} == {operator}
    audit = AuditEntry.objects.get(action="codes.generate", target_id=batch)
    assert audit.actor == operator and audit.after == {"count": 5, "amount": "2.50", "total": "12.50"}
    refused = ops.post(f"{CODES}generate/", {"amount": "0", "count": "5", "batch": batch})
    assert refused.status_code == 200 and refused.context["form"].errors["amount"]


def test_the_csv_export_holds_only_unused_codes(ops, make_user):
    batch = unique("batch")
    ops.post(f"{CODES}generate/", {"amount": "1", "count": "3", "batch": batch})
    codes = list(RedemptionCode.objects.filter(batch=batch).order_by("id"))
    code_redeem(user=make_user(), code=codes[0].code)
    answer = run_action(ops, CODES, "export_unused_csv", codes)
    assert answer.status_code == 200 and answer["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert sorted(r["code"] for r in rows) == sorted(c.code for c in codes[1:])
    assert {r["batch"] for r in rows} == {batch}
    assert AuditEntry.objects.filter(action="codes.export").latest("pk").after["count"] == 2


def test_codes_can_not_be_added_changed_or_deleted_by_hand(ops):
    code = RedemptionCode.objects.create(code=unique("CODE"), amount=Decimal(1))
    assert ops.get(f"{CODES}add/").status_code == 403
    assert ops.post(f"{CODES}{code.pk}/change/", {"amount": "100"}).status_code == 403
    assert ops.post(f"{CODES}{code.pk}/delete/", {"post": "yes"}).status_code == 403


def test_usage_records_are_read_only_searchable_by_request_id_and_filterable(ops, make_key, catalog):
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    record = UsageRecord.objects.create(user=key.owner, key=key, model=model, status=200, streamed=True)
    base = "/admin/billing/usagerecord/"
    found = ops.get(base, {"q": str(record.request_id)})
    assert list(found.context["cl"].result_list) == [record]
    assert list(ops.get(base, {"q": "not-a-uuid"}).context["cl"].result_list) == []
    assert list(ops.get(base, {"q": str(uuid.uuid4())}).context["cl"].result_list) == []
    for filters in ({"streamed__exact": "1"}, {"client_disconnected__exact": "0"}, {"status": "200"},
                    {"model__id__exact": model.pk}, {"created_at__year": timezone.now().year}):  # fmt: skip
        assert ops.get(base, filters).status_code == 200, filters
    assert ops.post(f"{base}{record.pk}/change/", {"status": "500"}).status_code == 403
    assert ops.post(f"{base}{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ops.get(f"{base}add/").status_code == 403
    assert ops.get("/admin/billing/dailyusage/add/").status_code == 403


def test_the_overview_shows_traffic_money_providers_and_drift_in_red(ops, make_key, catalog):
    assert b"/admin/billing/usagerecord/overview/" in ops.get("/admin/").content  # linked from the index
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    DailyUsage.objects.create(
        user=key.owner, key=key, model=model, day=timezone.now().date(), requests=7, cost=Decimal("1234.5")
    )
    Purchase.objects.create(
        user=key.owner, amount=Decimal(10), stripe_session_id=unique("cs"), status="complete",
        completed_at=timezone.now(),
    )  # fmt: skip
    account_for(user=key.owner)
    ReconcileRun.objects.create(
        ok=False, accounts_checked=3, drift=[{"account": 42, "what": "balance", "cached": "1", "truth": "2"}]
    )
    page = ops.get("/admin/billing/usagerecord/overview/")
    assert page.status_code == 200
    html = page.content.decode()
    overview = page.context["overview"]
    assert [p.label for p in overview["periods"]] == ["Today", "7 days", "30 days"]
    assert all(
        p.requests >= 7 and p.spend >= Decimal("1234.5") and p.revenue >= 10 for p in overview["periods"]
    )
    assert any(row[0] == key.owner.email for row in overview["top_users"])
    assert any(row[0] == model.name for row in overview["top_models"])
    assert 'class="drift" id="reconcile-drift"' in html and "DRIFT" in html
    assert ".overview .drift" in html and "#ba2121" in html  # the drift style: red


def test_the_overview_says_when_the_ledger_balances(ops):
    ReconcileRun.objects.create(ok=True, accounts_checked=5)
    html = ops.get("/admin/billing/usagerecord/overview/").content.decode()
    assert "Balanced: 5 accounts checked" in html and "reconcile-drift" not in html


def test_the_overview_and_the_admin_are_for_staff_only(client, make_user):
    client.force_login(make_user())
    assert client.get("/admin/billing/usagerecord/overview/").status_code == 302  # to the admin login
    assert client.get("/admin/portal/user/").status_code == 302


def test_the_audit_trail_is_read_only(ops, make_user):
    entry = AuditEntry.objects.create(action="test", target_type="x", target_id="1")
    base = "/admin/portal/auditentry/"
    assert ops.get(base).status_code == 200
    assert ops.post(f"{base}{entry.pk}/change/", {"action": "edited"}).status_code == 403
    assert ops.post(f"{base}{entry.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_usage_list_shows_the_endpoint_and_filters_by_it(ops, make_key, catalog):
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    chat = UsageRecord.objects.create(user=key.owner, key=key, model=model, status=200)
    embedding = UsageRecord.objects.create(
        user=key.owner, key=key, model=model, status=200, endpoint="embeddings"
    )
    base = "/admin/billing/usagerecord/"
    page = ops.get(base, {"q": str(embedding.request_id)})
    assert '<td class="field-endpoint">Embeddings</td>' in page.content.decode()
    choices = [c["display"] for spec in page.context["cl"].filter_specs if spec.title == "endpoint"
               for c in spec.choices(page.context["cl"])]  # fmt: skip
    assert choices == ["All", "Chat completions", "Embeddings", "Completions", "Responses", "Messages"]
    for record, endpoint, found in [(embedding, "embeddings", [embedding]), (chat, "embeddings", []),
                                    (chat, "chat.completions", [chat])]:  # fmt: skip
        answer = ops.get(base, {"q": str(record.request_id), "endpoint__exact": endpoint})
        assert list(answer.context["cl"].result_list) == found, (record, endpoint)
    rollup = DailyUsage.objects.create(user=key.owner, key=key, model=model, day=timezone.now().date(),
                                       endpoint="messages", requests=1)  # fmt: skip
    rollups = ops.get("/admin/billing/dailyusage/", {"endpoint__exact": "messages"}).context["cl"]
    assert rollup in rollups.queryset and not rollups.queryset.exclude(endpoint="messages").exists()
