"""The building blocks of request validation: the failure helper, value rendering and generic field checkers.

Every check elsewhere in the package fails through ``fail`` and renders the client's value through ``show``,
so messages read the same whichever field they are about.
"""

from collections.abc import Callable
from typing import NoReturn, TypeGuard

import orjson

from proxy.gateway import errors

Checker = Callable[[object, str], None]

# Stands for "the key is absent", which differs from an explicit null in several places of the spec.
MISSING = object()


def fail(param: str | None, message: str) -> NoReturn:
    raise errors.invalid_request(message, param=param)


def load_body(raw: bytes) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        body = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        # orjson also raises JSONDecodeError past its nesting limit, so deep bodies end here, not in a
        # RecursionError.
        raise errors.invalid_request("The request body is not valid JSON.") from None
    if type(body) is not dict:
        fail(None, f"The request body must be a JSON object, got {show(body)}.")
    return body


def checked_body(raw: bytes, checks: dict[str, Checker]) -> dict:
    """The request body as an object with a model, each field of ``checks`` checked (400 naming it)."""
    body = load_body(raw)
    require_model(body)
    for key, check in checks.items():
        if key in body:
            check(body[key], key)
    return body


def require_model(body: dict) -> None:
    value = body.get("model", MISSING)
    if type(value) is not str or not value:
        fail("model", f"You must provide a model parameter (a non-empty string), got {show(value)}.")


def show(value: object) -> str:
    """A short, safe rendering of a client's value for an error message (never echoes a large payload)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if isinstance(value, int):  # bools were handled above
        # repr() of a huge int is slow and may even raise (int max str digits).
        return repr(value) if value.bit_length() <= 64 else "a very large integer"
    if kind is float:
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if kind is list:
        return "an array"
    if kind is dict:
        return "an object"
    if value is MISSING:
        return "nothing"
    return f"a {kind.__name__}"


def choices(allowed: tuple[str, ...]) -> str:
    return ", ".join(repr(a) for a in allowed)


def is_int(value: object) -> TypeGuard[int]:
    # bool is a subclass of int; JSON true must not pass as 1.
    return type(value) is int


def _is_number(value: object) -> TypeGuard[int | float]:
    kind = type(value)
    return kind is int or kind is float


# --- checks on a key of an object --------------------------------------------------------------------------


def require_object(value: object, param: str, what: str) -> dict:
    if type(value) is not dict:
        fail(param, f"{param} must be {what}, got {show(value)}")
    return value


def child(obj: dict, key: str, param: str, what: str) -> dict:
    """``obj[key]``, which must be an object; ``param`` names ``obj``."""
    return require_object(obj.get(key, MISSING), f"{param}.{key}", what)


def require_str(obj: dict, key: str, param: str, *, optional: bool = False) -> None:
    value = obj.get(key, MISSING)
    if value is MISSING and optional:
        return
    if type(value) is not str:
        fail(f"{param}.{key}", f"{param}.{key} must be a string, got {show(value)}")


def require_enum(
    obj: dict, key: str, param: str, allowed: tuple[str, ...], *, optional: bool = False
) -> None:
    value = obj.get(key, MISSING)
    if value is MISSING and optional:
        return
    # Check the type first: `[] in allowed` is fine, but a set/dict lookup of a list would raise TypeError.
    if type(value) is not str or value not in allowed:
        fail(f"{param}.{key}", f"{param}.{key} must be one of {choices(allowed)}, got {show(value)}")


# --- generic field checkers --------------------------------------------------------------------------------


def number(low: float, high: float) -> Checker:
    def check(value: object, param: str) -> None:
        # Written as `not low <= v <= high` so NaN and infinities (possible only via direct calls) fail too.
        if value is not None and (not _is_number(value) or not low <= value <= high):
            fail(param, f"{param} must be a number between {low} and {high}, got {show(value)}")

    return check


def integer(low: int, high: int, what: str | None = None) -> Checker:
    what = what or f"an integer between {low} and {high}"

    def check(value: object, param: str) -> None:
        if value is not None and (not is_int(value) or not low <= value <= high):
            fail(param, f"{param} must be {what}, got {show(value)}")

    return check


def boolean(*, nullable: bool) -> Checker:
    def check(value: object, param: str) -> None:
        if type(value) is not bool and not (nullable and value is None):
            fail(param, f"{param} must be a boolean{' or null' if nullable else ''}, got {show(value)}")

    return check


def string(*, nullable: bool, max_length: int | None = None) -> Checker:
    def check(value: object, param: str) -> None:
        if nullable and value is None:
            return
        if type(value) is not str:
            fail(param, f"{param} must be a string{' or null' if nullable else ''}, got {show(value)}")
        if max_length is not None and len(value) > max_length:
            fail(param, f"{param} must be at most {max_length} characters long, got {len(value)}")

    return check


def enum(*allowed: str, nullable: bool = True) -> Checker:
    def check(value: object, param: str) -> None:
        if nullable and value is None:
            return
        if type(value) is not str or value not in allowed:
            fail(param, f"{param} must be one of {choices(allowed)}, got {show(value)}")

    return check


def object_or_null(value: object, param: str) -> None:
    # For nested configs we pass through to the upstream; checking the outer type is cheap and catches typos.
    if value is not None and type(value) is not dict:
        fail(param, f"{param} must be an object or null, got {show(value)}")


def texts_or_tokens(value: object, param: str, *, empty_text: bool, max_items: int | None = None) -> list:
    """An embedding's ``input`` or a completion's ``prompt``: a string, an array of strings, an array of token
    ids or an array of token-id arrays, one kind only. Returns the items (strings, or lists of token ids)."""
    if value is MISSING or value is None:
        fail(param, f"Missing required parameter: '{param}' (a string, or an array of strings or token ids).")
    if isinstance(value, str):
        return [_text_item(value, param, empty_text)]
    if type(value) is not list or not value:
        fail(param, f"{param} must be a string or a non-empty array, got {show(value)}")
    if max_items is not None and len(value) > max_items:
        fail(param, f"{param} must have at most {max_items} items, got {len(value)}")
    if all(is_int(v) for v in value):
        return [_token_item(value, param)]
    kind = type(value[0])
    for i, item in enumerate(value):
        if type(item) is not kind or kind not in (str, list):
            fail(f"{param}[{i}]", f"{param} must be an array of strings, of token ids, or of token-id arrays, "
                 f"one kind only; {param}[{i}] is {show(item)}")  # fmt: skip
    if kind is str:
        return [_text_item(item, f"{param}[{i}]", empty_text) for i, item in enumerate(value)]
    return [_token_item(item, f"{param}[{i}]") for i, item in enumerate(value)]


def _text_item(value: str, param: str, empty_text: bool) -> str:
    if not value and not empty_text:
        fail(param, f"{param} must not be an empty string")
    return value


def _token_item(value: list, param: str) -> list:
    if not value:
        fail(param, f"{param} must not be an empty array of token ids")
    for j, token in enumerate(value):
        if not is_int(token) or token < 0:
            fail(f"{param}[{j}]", f"token ids must be integers of 0 or more, got {show(token)}")
    return value
