"""The closed set of /v1 errors and their two renderers: OpenAI's shape, and Anthropic's for /v1/messages.

Every failure on the hot path raises one of these; ``app.py`` turns it into
``{"error": {"message", "type", "param", "code"}}`` with the status from DESIGN.md's error table, or, for a
client of Anthropic's Messages API, into ``{"type": "error", "error": {"type", "message"}, "request_id"}``
with Anthropic's status and type for the same failure (``anthropic_status``).
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
    anthropic_type: str = ""  # the type an Anthropic-style upstream gave, passed on to Anthropic clients

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def render(self) -> bytes:
        return orjson.dumps(self.body())

    def anthropic_status(self) -> tuple[int, str]:
        """The status and error type an Anthropic client gets for this failure. An error an Anthropic-style
        upstream gave keeps its own type; ours map by status. Anthropic answers overload with 529, which its
        SDKs retry like a 503."""
        if self.anthropic_type:
            return self.status, self.anthropic_type
        status = 529 if self.status == 503 else self.status
        return status, ANTHROPIC_TYPES.get(status) or (
            "api_error" if status >= 500 else "invalid_request_error"
        )

    def anthropic_body(self, request_id: str) -> dict:
        return {
            "type": "error",
            "error": {"type": self.anthropic_status()[1], "message": self.message},
            "request_id": request_id,
        }


# Anthropic's error types by status (its API's error reference).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


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
