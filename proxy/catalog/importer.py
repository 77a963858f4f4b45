"""Import of the catalog file (TOML): providers, models, prices and routes.

The whole file is checked before anything is written, then applied in one transaction as an upsert: providers
by ``name``, models by ``id``, and each model's routes replaced by the file's. Running it twice changes nothing.
A bad file raises ``CatalogError`` with one line naming the entry and the field.
"""

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlparse

from django.db import transaction

from portal.accounts import notify
from proxy.catalog.models import Model, Provider, Route


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class CatalogSummary:
    providers: int
    models: int
    routes: int


_PROVIDER_FIELDS = {
    "name", "kind", "base_url", "api_key_env", "connect_timeout", "first_byte_timeout", "idle_timeout",
    "stream_usage", "circuit_threshold", "circuit_cooldown", "enabled", "responses",
}  # fmt: skip
_MODEL_FIELDS = {
    "id", "mode", "owned_by", "description", "input_usd_per_mtok", "output_usd_per_mtok", "context_length",
    "max_output_tokens", "enabled", "routes", "cached_input_usd_per_mtok", "cache_write_usd_per_mtok",
    "cache_write_1h_usd_per_mtok", "request_usd",
}  # fmt: skip
_ROUTE_FIELDS = {"provider", "upstream_model", "priority", "enabled"}
_CACHE_PRICES = ("cached_input_usd_per_mtok", "cache_write_usd_per_mtok", "cache_write_1h_usd_per_mtok")


def catalog_import(*, path: Path | str) -> CatalogSummary:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the file ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML ({exc})") from exc
    providers = [_provider(p, f"providers[{i}]") for i, p in enumerate(_tables(data, "providers"))]
    models = [_model(m, f"models[{i}]") for i, m in enumerate(_tables(data, "models"))]
    _check_references(providers, models)
    return _apply(providers, models)


def _tables(data: dict, name: str) -> list[dict]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise CatalogError(f"{name}: must be an array of tables ([[{name}]])")
    return value


def _unknown(entry: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(entry) - allowed)
    if extra:
        raise CatalogError(f"{where}.{extra[0]}: unknown field (allowed: {', '.join(sorted(allowed))})")


def _text(entry: dict, field: str, where: str, *, required: bool = True, default: str = "") -> str:
    value = entry.get(field)
    if value is None:
        if required:
            raise CatalogError(f"{where}.{field}: is required")
        return default
    if not isinstance(value, str) or (required and not value.strip()):
        raise CatalogError(f"{where}.{field}: must be a non-empty string")
    return value.strip()


def _number(entry: dict, field: str, where: str, default, *, kind=float, minimum=0):
    value = entry.get(field, default)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and isinstance(value, float))
    ):
        raise CatalogError(f"{where}.{field}: must be a {'whole ' if kind is int else ''}number")
    if value < minimum:
        raise CatalogError(f"{where}.{field}: must be at least {minimum}")
    return kind(value)


def _flag(entry: dict, field: str, where: str, default: bool) -> bool:
    value = entry.get(field, default)
    if not isinstance(value, bool):
        raise CatalogError(f"{where}.{field}: must be true or false")
    return value


def _price(entry: dict, field: str, where: str) -> Decimal:
    value = entry.get(field, "0")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CatalogError(f'{where}.{field}: must be a price in USD per million tokens, like "0.27"')
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise CatalogError(f'{where}.{field}: "{value}" is not a number') from None
    if not price.is_finite() or price < 0:
        raise CatalogError(f"{where}.{field}: must be zero or more")
    exponent = price.as_tuple().exponent  # an int for a finite number, which it is by now
    if isinstance(exponent, int) and exponent < -6:
        # Six places keep every cost exact at twelve (see billing/pricing.py).
        raise CatalogError(f"{where}.{field}: at most 6 decimal places")
    return price


def _provider(entry: dict, where: str) -> dict:
    _unknown(entry, _PROVIDER_FIELDS, where)
    kind = _text(entry, "kind", where, required=False, default=Provider.Kind.OPENAI)
    if kind not in Provider.Kind.values:
        raise CatalogError(f"{where}.kind: must be one of {', '.join(Provider.Kind.values)}")
    base_url = _text(entry, "base_url", where, required=kind != Provider.Kind.DEMO)
    parsed = urlparse(base_url)
    if base_url and (parsed.scheme not in ("http", "https") or not parsed.netloc):
        raise CatalogError(f"{where}.base_url: must be an http:// or https:// URL")
    return {
        "name": _text(entry, "name", where),
        "kind": kind,
        "base_url": base_url,
        "api_key_env": _text(entry, "api_key_env", where, required=False),
        "connect_timeout": _number(entry, "connect_timeout", where, 5.0),
        "first_byte_timeout": _number(entry, "first_byte_timeout", where, 60.0),
        "idle_timeout": _number(entry, "idle_timeout", where, 60.0),
        "stream_usage": _flag(entry, "stream_usage", where, True),
        "responses": _flag(entry, "responses", where, False),
        "circuit_threshold": _number(entry, "circuit_threshold", where, 5, kind=int, minimum=1),
        "circuit_cooldown": _number(entry, "circuit_cooldown", where, 30.0),
        "enabled": _flag(entry, "enabled", where, True),
    }


def _model(entry: dict, where: str) -> dict:
    _unknown(entry, _MODEL_FIELDS, where)
    routes = entry.get("routes")
    if not isinstance(routes, list) or not routes or not all(isinstance(r, dict) for r in routes):
        raise CatalogError(
            f"{where}.routes: must be a non-empty array of {{ provider, upstream_model }} tables"
        )
    mode = _text(entry, "mode", where, required=False, default=Model.Mode.CHAT)
    if mode not in Model.Mode.values:
        raise CatalogError(f"{where}.mode: must be one of {', '.join(Model.Mode.values)}")
    return {
        "name": _text(entry, "id", where),
        "mode": mode,
        "owned_by": _text(entry, "owned_by", where),
        "description": _text(entry, "description", where, required=False),
        "input_usd_per_mtok": _price(entry, "input_usd_per_mtok", where),
        "output_usd_per_mtok": _price(entry, "output_usd_per_mtok", where),
        # Unset cache prices stay unset (null), so they follow the input price when it changes.
        **{field: _price(entry, field, where) if field in entry else None for field in _CACHE_PRICES},
        "request_usd": _price(entry, "request_usd", where),
        "context_length": _number(entry, "context_length", where, None, kind=int, minimum=1),
        "max_output_tokens": _number(entry, "max_output_tokens", where, None, kind=int, minimum=1),
        "enabled": _flag(entry, "enabled", where, True),
        "routes": [_route(r, f"{where}.routes[{j}]") for j, r in enumerate(routes)],
    }


def _route(entry: dict, where: str) -> dict:
    _unknown(entry, _ROUTE_FIELDS, where)
    return {
        "provider": _text(entry, "provider", where),
        "upstream_model": _text(entry, "upstream_model", where),
        "priority": _number(entry, "priority", where, 1, kind=int, minimum=0),
        "enabled": _flag(entry, "enabled", where, True),
    }


def _check_references(providers: list[dict], models: list[dict]) -> None:
    names = [p["name"] for p in providers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise CatalogError(f"providers[{i}].name: '{name}' appears twice")
    kinds = dict(Provider.objects.values_list("name", "kind")) | {p["name"]: p["kind"] for p in providers}
    seen: set[str] = set()
    for i, model in enumerate(models):
        if model["name"] in seen:
            raise CatalogError(f"models[{i}].id: '{model['name']}' appears twice")
        seen.add(model["name"])
        for j, route in enumerate(model["routes"]):
            kind = kinds.get(route["provider"])
            if kind is None:
                raise CatalogError(
                    f"models[{i}].routes[{j}].provider: no provider named '{route['provider']}'"
                )
            # Anthropic's API has no embeddings or legacy completions: such a route could never answer.
            if kind == Provider.Kind.ANTHROPIC and model["mode"] != Model.Mode.CHAT:
                raise CatalogError(
                    f"models[{i}].routes[{j}].provider: '{route['provider']}' speaks Anthropic's Messages API, "
                    f"which serves only chat models, not {model['mode']} ones"
                )


@transaction.atomic
def _apply(providers: list[dict], models: list[dict]) -> CatalogSummary:
    for fields in providers:
        Provider.objects.update_or_create(name=fields["name"], defaults=fields)
    by_name = {p.name: p for p in Provider.objects.all()}
    route_count = 0
    for fields in models:
        route_specs = fields.pop("routes")
        model, _ = Model.objects.update_or_create(name=fields["name"], defaults=fields)
        keep = []
        for spec in route_specs:
            route, _ = Route.objects.update_or_create(
                model=model, provider=by_name[spec["provider"]], upstream_model=spec["upstream_model"],
                defaults={"priority": spec["priority"], "enabled": spec["enabled"]},
            )  # fmt: skip
            keep.append(route.pk)
        Route.objects.filter(model=model).exclude(pk__in=keep).delete()
        route_count += len(keep)
    notify.catalog_changed()
    return CatalogSummary(len(providers), len(models), route_count)
