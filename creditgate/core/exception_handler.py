"""Every API error leaves in the contract's shape: {"error": {"code", "message", "details"}}.

`api_exception_handler` is DRF's exception handler (settings.REST_FRAMEWORK), for what a DRF view
raises. `api_error_for_exception` and `api_error_for_status` serve the rest: Django's error views
(`core.views.error_*`, for what fails outside a view, e.g. an unknown path or a malformed id) and
`core.middleware.ApiErrorMiddleware` (what slips past both, e.g. Django's debug pages).

Beyond the application's own errors:
- a body over DATA_UPLOAD_MAX_MEMORY_SIZE: 413 `payload_too_large`, the limit in details;
- a transient fault of the database or the broker (a dropped connection, a failover, a lock
  timeout): 503 `service_unavailable` with `Retry-After`; the request may simply be sent again;
- anything else unexpected: 500 `internal_error` whose details carry the request id, the id that
  django-structlog's `request_failed` log line (with the traceback) carries too. Never a traceback.
"""

from __future__ import annotations

import logging

import kombu.exceptions
import redis.exceptions
from django import db
from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.signals import got_request_exception
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from creditgate.core.errors import (
    ApplicationError,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    TooManyJobsInFlight,
)
from creditgate.core.logging import request_id_current

logger = logging.getLogger(__name__)

# Faults of what the request depends on, not of the request or the code: retrying is the answer.
# (Django wraps every database driver's errors in its own classes; kombu wraps the broker's.)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    db.OperationalError,
    db.InterfaceError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
# What a 503 asks the client to wait: long enough for a connection to be re-established.
RETRY_AFTER_SECONDS = 5

_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


_MESSAGES = {
    400: "Bad request.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "The request body is too large.",
    500: "An unexpected error occurred; quote the request id if you report it.",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def is_api_request(request: HttpRequest) -> bool:
    """Under /api/ (the job API) or /v1/ (the OpenAI-compatible one, whose views answer in OpenAI's
    shape; what fails before a view, e.g. an unknown path, answers in ours, which has `message` and
    `code` where OpenAI's SDKs read them)."""
    path = request.path_info
    return path in ("/api", "/v1") or path.startswith(("/api/", "/v1/"))


def request_id_of(request: HttpRequest | None) -> str | None:
    """The id core.middleware.RequestIdMiddleware gave this request (the one in X-Request-ID)."""
    return request_id_current() or (request.META.get("HTTP_X_REQUEST_ID") if request is not None else None)


def _internal_error(request: HttpRequest | None) -> tuple[int, dict, dict]:
    return 500, error_body("internal_error", _MESSAGES[500], {"request_id": request_id_of(request)}), {}


def api_error_for_exception(exc: BaseException, request: HttpRequest | None) -> tuple[int, dict, dict]:
    """(status, body, headers) for an exception that is not one of DRF's or the application's.
    Logs a transient fault; an unexpected one is logged by whoever sent `got_request_exception`."""
    if isinstance(exc, RequestDataTooBig):
        from django.conf import settings

        error: ApplicationError = PayloadTooLarge(limit_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return error.status_code, error_body(error.code, error.message, error.details), {}
    if isinstance(exc, SuspiciousOperation):  # e.g. too many fields, a disallowed host
        return 400, error_body("invalid_request", _MESSAGES[400]), {}
    if isinstance(exc, TRANSIENT_ERRORS):
        logger.warning("service_unavailable: %s: %s", type(exc).__name__, exc, exc_info=exc)
        error = ServiceUnavailable(retry_after=RETRY_AFTER_SECONDS)
        return (error.status_code, error_body(error.code, error.message, error.details),
                {"Retry-After": str(RETRY_AFTER_SECONDS)})
    return _internal_error(request)


def api_error_for_status(status_code: int, request: HttpRequest | None) -> tuple[int, dict, dict]:
    """(status, body, headers) for an error response made without an exception we could see."""
    if status_code >= 500:
        return _internal_error(request)
    if status_code == 413:
        return api_error_for_exception(RequestDataTooBig(), request)
    code = _CODES.get(status_code, "invalid_request" if status_code == 400 else "error")
    return status_code, error_body(code, _MESSAGES.get(status_code, "The request failed.")), {}


def json_error_response(status_code: int, body: dict, headers: dict) -> JsonResponse:
    response = JsonResponse(body, status=status_code)
    for name, value in headers.items():
        response[name] = value
    return response


def _field_errors(detail) -> dict:
    """Flatten DRF's nested ValidationError detail into {field: [messages]}."""
    if isinstance(detail, dict):
        out = {}
        for field, value in detail.items():
            if isinstance(value, dict):
                for sub, msgs in _field_errors(value).items():
                    out[f"{field}.{sub}"] = msgs
            else:
                out[field] = [str(m) for m in (value if isinstance(value, list) else [value])]
        return out
    if isinstance(detail, list):
        return {"non_field_errors": [str(m) for m in detail]}
    return {"non_field_errors": [str(detail)]}


def api_exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        refused = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        if isinstance(exc, (RateLimited, ServiceUnavailable, TooManyJobsInFlight)):
            refused["Retry-After"] = str(exc.details["retry_after"])
        return refused

    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if not isinstance(exc, exceptions.APIException):
        request = context.get("request")
        django_request = getattr(request, "_request", request)
        status_code, body, headers = api_error_for_exception(exc, django_request)
        if status_code == 500:
            # What Django does for an uncaught exception: django-structlog logs `request_failed`
            # with the traceback and the request id; error reporters and the test client see it.
            got_request_exception.send(sender=None, request=django_request)
        set_rollback()
        return Response(body, status=status_code, headers=headers)

    response = drf_exception_handler(exc, context)
    if response is None:  # not reached: every APIException gets a response
        return None

    status_code = response.status_code
    code = _CODES.get(status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        fields = _field_errors(exc.detail)
        names = ", ".join(sorted(fields))
        message = f"Invalid input: {names}." if names else "Invalid input."
        response.data = error_body("invalid_request", message, fields)
    elif isinstance(exc, exceptions.ParseError):
        response.data = error_body("invalid_request", "The request body is not valid JSON.")
    elif isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)  # type: ignore[attr-defined]  # stub bug: Throttled.__init__ sets .wait
        response.data = error_body("rate_limited", f"Too many requests; try again in {wait} seconds.",
                                   {"retry_after": wait})
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = error_body(code, str(detail))
    if status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = "Token"
    return response
