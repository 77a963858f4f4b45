from django.contrib import admin

from proxy.models import Model, Provider, Route


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "base_url", "enabled"]


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = ["name", "owned_by", "input_usd_per_mtok", "output_usd_per_mtok", "enabled"]
    inlines = [RouteInline]
