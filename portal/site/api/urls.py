"""The management API under /api/: v1 endpoints, the OpenAPI schema and a documentation page."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import AllowAny

from portal.site.api import views
from portal.site.api.docs import api_docs
from portal.site.api.errors import api_not_found

urlpatterns = [
    path("v1/key", views.KeySelfApi.as_view(), name="api-key"),
    path("v1/keys", views.KeyListApi.as_view(), name="api-keys"),
    path("v1/keys/<int:id>", views.KeyDetailApi.as_view(), name="api-key-detail"),
    path("v1/credits", views.CreditsApi.as_view(), name="api-credits"),
    path("v1/usage", views.UsageApi.as_view(), name="api-usage"),
    path("v1/generation", views.GenerationApi.as_view(), name="api-generation"),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path("docs/", api_docs, name="api-docs"),
    re_path(r"^", api_not_found),  # anything else under /api/ is a 404 in the API's error shape
]
