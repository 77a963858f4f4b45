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
