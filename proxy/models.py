"""Django looks for an app's models here; they live in proxy/catalog/models.py."""

from proxy.catalog.models import Model, Provider, Route

__all__ = ["Model", "Provider", "Route"]
