"""The catalog as the gateway serves it: an immutable snapshot of servable models and their routes.

Rebuilt from the database whenever the catalog changes (proxy/gateway/catalog_cache.py says when).
"""

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from proxy.catalog import secrets
from proxy.catalog.models import Model, Route
from proxy.catalog.prices import Prices


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    id: int
    name: str
    kind: str
    base_url: str
    secret: str | None = field(repr=False)
    connect_timeout: float
    first_byte_timeout: float
    idle_timeout: float
    stream_usage: bool
    circuit_threshold: int
    circuit_cooldown: float
    responses: bool = False  # serves /responses itself


@dataclass(frozen=True, slots=True)
class RouteInfo:
    provider: ProviderInfo
    upstream_model: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: int
    name: str
    mode: str  # a proxy.catalog.models.Model.Mode: which endpoints it serves
    owned_by: str
    created: int
    prices: Prices
    context_length: int | None
    max_output_tokens: int | None
    routes: tuple[RouteInfo, ...]
    is_free: bool = (
        False  # nothing to pay (Prices.is_free), kept as a field: the hot path reads it per request
    )

    @property
    def input_price(self) -> Decimal:
        return self.prices.input

    @property
    def output_price(self) -> Decimal:
        return self.prices.output

    def openai(self) -> dict:
        return {
            "id": self.name, "object": "model", "created": self.created, "owned_by": self.owned_by,
            "mode": self.mode,
        }  # fmt: skip

    def anthropic(self) -> dict:
        """The model as Anthropic's Models API lists it (the catalog has no display name of its own)."""
        created = datetime.fromtimestamp(self.created, UTC).isoformat().replace("+00:00", "Z")
        return {"type": "model", "id": self.name, "display_name": self.name, "created_at": created}


@dataclass(frozen=True, slots=True)
class Catalog:
    models: dict[str, ModelInfo]
    version: int = 0

    def listing(self, allowed: frozenset[str] | None) -> list[dict]:
        return [m.openai() for name, m in self.models.items() if allowed is None or name in allowed]

    def anthropic_listing(self, allowed: frozenset[str] | None) -> list[dict]:
        """The chat models, as Anthropic's Models API lists them: an Anthropic client can call nothing else."""
        return [
            m.anthropic()
            for name, m in self.models.items()
            if m.mode == "chat" and (allowed is None or name in allowed)
        ]


def provider_secret(*, encrypted: str, env_name: str) -> str | None:
    """The provider's API key: decrypted from the database, else read from the named environment variable."""
    if encrypted:
        try:
            return secrets.decrypt(encrypted)
        except secrets.InvalidToken:
            return None  # a rotated encryption key: the provider answers 401 and the operator sees it
    return os.environ.get(env_name) if env_name else None


def load_catalog(version: int = 0) -> Catalog:
    """Read the servable catalog: enabled models with at least one enabled route on an enabled provider."""
    routes: dict[int, list[RouteInfo]] = {}
    query = Route.objects.filter(enabled=True, provider__enabled=True, model__enabled=True).select_related(
        "provider"
    )
    for route in query.order_by("priority", "id"):
        p = route.provider
        info = ProviderInfo(
            p.id, p.name, p.kind, p.base_url.rstrip("/"), provider_secret(encrypted=p.api_key_encrypted,
            env_name=p.api_key_env), p.connect_timeout, p.first_byte_timeout, p.idle_timeout, p.stream_usage,
            p.circuit_threshold, p.circuit_cooldown, p.responses,
        )  # fmt: skip
        routes.setdefault(route.model_id, []).append(RouteInfo(info, route.upstream_model))
    models = {}
    for m in Model.objects.filter(id__in=routes).order_by("name"):
        models[m.name] = ModelInfo(
            m.id, m.name, m.mode, m.owned_by, int(m.created_at.timestamp()), m.prices, m.context_length,
            m.max_output_tokens, tuple(routes[m.id]), m.prices.is_free,
        )  # fmt: skip
    return Catalog(models, version)
