from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("portal.site.api.urls")),  # the management API (DRF)
    path("stripe/", include("billing.urls")),  # the payment provider's webhook
    path("", include("portal.site.web_urls")),  # the dashboard and public pages
]
