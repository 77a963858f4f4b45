"""The gateway's view of the catalog: the snapshot in use, and a model looked up by its public id."""

from proxy.catalog.snapshot import Catalog, ModelInfo
from proxy.gateway import errors


def resolve(catalog: Catalog, name: str, allowed: frozenset[str] | None) -> ModelInfo:
    """The model a request names: 404 when the snapshot has none by that id, 403 outside the key's list."""
    model = catalog.models.get(name)
    if model is None:
        raise errors.model_not_found(name)
    if allowed is not None and name not in allowed:
        raise errors.permission_denied(f"This API key is not allowed to use the model '{errors.clip(name)}'.")
    return model
