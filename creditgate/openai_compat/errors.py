"""Errors of /v1 in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with the
statuses OpenAI's SDKs map to their exception classes (400 BadRequestError, 401
AuthenticationError, 402 APIStatusError, 403 PermissionDeniedError, 404 NotFoundError, 409
ConflictError, 429 RateLimitError, 5xx InternalServerError; the SDKs retry 409, 429 and 5xx).

The application's errors carry our codes (insufficient_credits, member_cap_exceeded, ...) and
keep them; a refusal for credits or a cap is a 402, as OpenRouter answers. The job API's handler
(core.exception_handler) decides status, code and message; this only reshapes its answer.
"""

from __future__ import annotations

from django.http import JsonResponse
from rest_framework.response import Response

from creditgate.core.exception_handler import api_exception_handler

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_credits",
          403: "permission_error", 404: "invalid_request_error", 409: "invalid_request_error",
          413: "invalid_request_error", 415: "invalid_request_error", 422: "invalid_request_error",
          429: "rate_limit_error"}
_CODES = {401: "invalid_api_key"}


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error_response(status: int, code: str, message: str, *, param: str | None = None,
                          retry_after: int | None = None) -> JsonResponse:
    response = JsonResponse(error_body(status, code, message, param), status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def openai_exception_handler(exc, context):
    """The job API's answer to `exc`, in OpenAI's shape; `param` is the first field the details
    name (a 400) or the model (a 404 model_not_found)."""
    response = api_exception_handler(exc, context)
    if response is None:
        return None
    ours = (response.data or {}).get("error", {}) if isinstance(response.data, dict) else {}
    details = ours.get("details") or {}
    param = None
    if response.status_code == 400 and details:
        param = next(iter(details))
    elif ours.get("code") == "model_not_found":
        param = "model"
    code = _CODES.get(response.status_code, ours.get("code") or "error")
    reshaped = Response(error_body(response.status_code, code, ours.get("message") or "The request failed.", param),
                        status=response.status_code)
    for name in ("Retry-After", "WWW-Authenticate"):
        if name in response:
            reshaped[name] = response[name]
    return reshaped
