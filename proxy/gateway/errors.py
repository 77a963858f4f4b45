"""The closed set of /v1 errors and their one renderer, in OpenAI's shape.

Every failure on the hot path raises one of these; ``app.py`` turns it into
``{"error": {"message", "type", "param", "code"}}`` with the status from DESIGN.md's error table.
"""

from dataclasses import dataclass, field

import orjson


@dataclass(eq=False)
class ApiError(Exception):
    status: int
    type: str
    code: str | None
    message: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def render(self) -> bytes:
        return orjson.dumps(self.body())


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", code, message, param)


def invalid_api_key(message: str = "Invalid API key. Check the key, or create a new one.") -> ApiError:
    return ApiError(401, "invalid_request_error", "invalid_api_key", message)


def insufficient_credits(message: str) -> ApiError:
    return ApiError(402, "insufficient_quota", "insufficient_credits", message)


def permission_denied(message: str, *, code: str = "model_not_allowed") -> ApiError:
    return ApiError(403, "permission_error", code, message)


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404, "invalid_request_error", "model_not_found", f"The model '{clip(model)}' does not exist.", "model"
    )


def wrong_endpoint(model: str, path: str, right_path: str | None) -> ApiError:
    """A model called on an endpoint it does not serve: OpenAI answers 404, naming the model and the path."""
    hint = f" Did you mean to use {right_path}?" if right_path else ""
    message = f"The model '{clip(model)}' is not supported on {path}.{hint}"
    return ApiError(404, "invalid_request_error", None, message, "model")


def context_length_exceeded(limit: int, tokens: int) -> ApiError:
    message = (
        f"This model's maximum context length is {limit} tokens. However, your messages resulted in {tokens} "
        "tokens. Please reduce the length of the messages."
    )
    return ApiError(400, "invalid_request_error", "context_length_exceeded", message, "messages")


def clip(text: str, limit: int = 64) -> str:
    """A client's text quoted in an error, clipped: an answer never grows with what the client sent."""
    return text if len(text) <= limit else text[:limit] + "..."


def response_not_found(response_id: str) -> ApiError:
    """The one answer for a response that never existed, was deleted, was not stored, or is another
    account's: none of them may be told apart."""
    return ApiError(404, "invalid_request_error", None, f"Response with id '{clip(response_id)}' not found.")


def unknown_url(method: str, path: str) -> ApiError:
    return ApiError(404, "invalid_request_error", "unknown_url", f"Unknown request URL: {method} {path}.")


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(405, "invalid_request_error", "method_not_allowed", f"{method} is not allowed on {path}.")


def request_too_large(limit: int) -> ApiError:
    return ApiError(
        413, "invalid_request_error", "request_too_large", f"The request body exceeds {limit} bytes."
    )


def rate_limited(message: str, *, retry_after: int, retry: bool) -> ApiError:
    headers = {"retry-after": str(retry_after)}
    if not retry:
        headers["x-should-retry"] = "false"
    return ApiError(429, "rate_limit_error", "rate_limit_exceeded", message, headers=headers)


def internal_error() -> ApiError:
    return ApiError(500, "server_error", "internal_error", "The server had an error processing your request.")


def bad_gateway(message: str = "The upstream provider returned an error.") -> ApiError:
    return ApiError(502, "upstream_error", "bad_gateway", message)


def service_unavailable(message: str, *, retry_after: int = 1) -> ApiError:
    return ApiError(
        503, "server_error", "service_unavailable", message, headers={"retry-after": str(retry_after)}
    )


def upstream_timeout() -> ApiError:
    return ApiError(504, "timeout", "upstream_timeout", "The upstream provider did not answer in time.")
