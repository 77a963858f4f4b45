"""Every admin page an operator can open renders."""

from django.contrib import admin
from django.urls import reverse


def test_every_change_list_and_the_index_render(ops, gateway):
    assert ops.get("/admin/").status_code == 200
    for model in admin.site._registry:
        opts = model._meta
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        assert ops.get(url).status_code == 200, url
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[first.pk])
            assert ops.get(change).status_code == 200, change


def test_add_pages_render_where_adding_is_allowed(ops):
    for path in ("/admin/portal/user/add/", "/admin/proxy/provider/add/", "/admin/proxy/model/add/"):
        assert ops.get(path).status_code == 200, path


def test_a_usage_record_shows_its_token_kinds_and_its_raw_usage_read_only(ops, make_key, catalog):
    from billing.models import UsageRecord
    from proxy.catalog.models import Model

    key, _ = make_key()
    raw = {"input_tokens": 7, "cache_read_input_tokens": 1200, "output_tokens": 40, "note": "<b>as sent</b>"}
    record = UsageRecord.objects.create(
        user=key.owner, key=key, model=Model.objects.get(name=catalog["echo"]), prompt_tokens=1257,
        completion_tokens=40, cache_read_tokens=1200, cache_write_tokens=50, reasoning_tokens=12, usage_raw=raw,
        status=200,
    )  # fmt: skip
    page = ops.get(reverse("admin:billing_usagerecord_change", args=[record.pk])).content.decode()
    for label in ("Cache read tokens", "Cache write tokens", "Cache write 1h tokens", "Reasoning tokens"):
        assert label in page, label
    assert "<pre>{\n  &quot;cache_read_input_tokens&quot;: 1200," in page  # pretty-printed, for an auditor
    assert "&lt;b&gt;as sent&lt;/b&gt;" in page and "<b>as sent</b>" not in page  # escaped, as it came
    assert "<textarea" not in page and 'name="_save"' not in page  # read-only
    listing = ops.get(reverse("admin:billing_usagerecord_changelist") + f"?q={record.pk}").content.decode()
    assert '<td class="field-cache_read_tokens">1200</td>' in listing
    assert '<td class="field-reasoning_tokens">12</td>' in listing
