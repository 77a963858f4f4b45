"""One error shape for the whole management API: ``{"error": {"message": ..., "code": ..., "fields": ...}}``.

``fields`` appears on validation errors (400) only, with every message per field. Anything unexpected becomes
a 500 ``internal_error`` without details (the traceback goes to the log).
"""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

log = logging.getLogger("portal.site.api")


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the object."
    default_code = "conflict"


def error_body(message: str, code: str, fields: dict | None = None) -> dict:
    error: dict[str, Any] = {"message": message, "code": code}
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


def api_exception_handler(exc: Exception, context: dict) -> Response:
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        log.error("unhandled error in the management API", exc_info=exc)
        return Response(
            error_body("The server had an error processing your request.", "internal_error"), status=500
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(_first_message(exc.detail), "invalid_request", _as_fields(exc.detail))
    elif isinstance(exc, exceptions.APIException):  # always, once exception_handler has answered
        code = getattr(exc.detail, "code", None) or exc.default_code
        response.data = error_body(str(exc.detail), str(code))
    return response


def _as_fields(detail) -> dict:
    return detail if isinstance(detail, dict) else {"non_field_errors": detail}


def _first_message(detail, path: str = "") -> str:
    """The first message, prefixed with where it is: ``allowed_models.0: ...``."""
    if isinstance(detail, dict):
        name, value = next(iter(detail.items()))
        inner = "" if name == "non_field_errors" else str(name)
        return _first_message(value, f"{path}.{inner}" if path and inner else path or inner)
    if isinstance(detail, list) and detail:
        return _first_message(detail[0], path)
    return f"{path}: {detail}" if path else str(detail)


@csrf_exempt  # it changes nothing, and a CSRF refusal would be Django's HTML page instead of a JSON 404
def api_not_found(request: HttpRequest, *args, **kwargs) -> JsonResponse:
    """Unknown URLs under /api/ answer in the API's shape instead of Django's HTML page."""
    return JsonResponse(error_body(f"Unknown URL: {request.method} {request.path}", "not_found"), status=404)
