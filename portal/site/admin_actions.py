"""Admin actions that need input first (an amount and a reason, new limits): one intermediate page for all."""

from collections.abc import Callable

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse


def form_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, form_class: type[forms.Form],
    title: str, intro: str, submit_label: str, apply: Callable[[QuerySet, dict], None],
) -> TemplateResponse | None:  # fmt: skip
    """Show ``form_class`` for the selected rows; once it is posted back valid, call ``apply`` and return
    None, which sends the operator back to the change list with the messages ``apply`` left."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        apply(queryset, form.cleaned_data)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "submit_label": submit_label,
        "form": form,
        "queryset": queryset,
        "action": request.POST["action"],
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/action_form.html", context)
