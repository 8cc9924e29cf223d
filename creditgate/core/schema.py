"""OpenAPI pieces every API shares (drf-spectacular): the Error component, and the AutoSchema that
declares on every operation the errors it can produce, so no view has to repeat them.

The error responses are derived from what the view is, not listed by hand: a 401 wherever a
credential is required, a 404 wherever the path has parameters or the list is paginated, 413 and
415 wherever there is a body, and so on. A view still declares the errors of its own business
(402 insufficient_credits, 409 idempotency_conflict, ...) with `error_response`; a code it
declares keeps its description. The codes match core.exception_handler's (and the middleware's,
for 413, 500 and 503)."""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import permissions, serializers
from rest_framework.authentication import SessionAuthentication


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    """The one error shape (core.exception_handler): {"error": {"code", "message", "details"}}."""

    @extend_schema_serializer(component_name="ErrorBody")
    class ErrorBody(serializers.Serializer):
        code = serializers.RegexField(r"^[a-z][a-z0-9_]*$",
                                      help_text="Machine-readable, snake_case, e.g. invalid_request.")
        message = serializers.CharField(help_text="A sentence for a person.")
        details = serializers.DictField(help_text="For invalid_request: {field: [messages]}; otherwise what the "
                                                  "code's description says (may be empty).")

    error = ErrorBody()


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


def _header(description: str, *, required: bool, schema: dict | None = None) -> dict:
    return {"schema": schema or {"type": "string"}, "required": required, "description": description}


RETRY_AFTER = "Seconds to wait before trying again."

# Headers that go with a status whatever the operation (RFC 9110: 401 WWW-Authenticate, 405 Allow).
_HEADERS = {
    "401": {"WWW-Authenticate": _header("The scheme to authenticate with.", required=True)},
    "405": {"Allow": _header("The methods this path accepts.", required=True)},
    "429": {"Retry-After": _header(RETRY_AFTER, required=True, schema={"type": "integer", "minimum": 1})},
    "503": {"Retry-After": _header(RETRY_AFTER, required=False, schema={"type": "integer", "minimum": 0})},
}

# Permission classes that refuse only the anonymous (401 here: the first authenticator has a
# WWW-Authenticate header), never an authenticated caller.
_NO_403 = (permissions.AllowAny, permissions.IsAuthenticated)
_UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema plus every operation's error responses (the Error component),
    and request text fields declared as DRF validates them."""

    def _get_serializer_field_meta(self, field, direction):
        meta = super()._get_serializer_field_meta(field, direction)
        # DRF refuses a blank string in a CharField unless allow_blank, after trimming it unless
        # trim_whitespace=False: "" and "   " are both "This field may not be blank.". Requests
        # only: an answer's text is not validated, and drf-spectacular's own switches for this
        # (COMPONENT_SPLIT_REQUEST, ENFORCE_NON_BLANK_FIELDS) rename components or touch answers.
        if (direction == "request" and isinstance(field, serializers.CharField) and not field.allow_blank
                and not field.read_only):
            meta.setdefault("minLength", 1)
            if field.trim_whitespace and not any(isinstance(v, RegexValidator) for v in field.validators):
                meta["pattern"] = r"\S"  # at least one character that is not white space
        return meta

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in self._error_codes().items():
            if code not in responses:
                responses[code] = self._get_response_for_code(error_response(description), code,
                                                              direction=direction)
        for code, headers in _HEADERS.items():
            if code in responses:
                responses[code].setdefault("headers", {})
                for name, header in headers.items():
                    responses[code]["headers"].setdefault(name, header)
        return dict(sorted(responses.items()))

    def _error_codes(self) -> dict[str, str]:
        view = self.view
        perms = [p() if isinstance(p, type) else p for p in getattr(view, "permission_classes", [])]
        auth_required = any(not isinstance(p, permissions.AllowAny) for p in perms)
        has_body = self.method in ("POST", "PUT", "PATCH") and self._get_request_body() is not None
        parameters = self._get_parameters()
        paginator = self._get_paginator() if self._is_list_view() else None
        has_query = any(p["in"] == "query" for p in parameters)  # a page that is no page number too
        has_path = any(p["in"] == "path" for p in parameters)
        paginated = paginator is not None
        session = any(issubclass(a, SessionAuthentication) for a in getattr(view, "authentication_classes", []))

        codes: dict[str, str] = {}
        if has_body or has_query:
            parts = (("the body", has_body), ("a query parameter", has_query))
            what = " or ".join(w for w, present in parts if present)
            codes["400"] = (f"invalid_request: {what} is not what this operation takes (`details` maps each field "
                            f"to its messages)"
                            + (", or the body is not JSON or is nested too deep." if has_body else "."))
        if auth_required:
            codes["401"] = "not_authenticated: no, an unknown, a revoked or a malformed credential."
        if auth_required and (any(not isinstance(p, _NO_403) for p in perms) or (session and self.method in _UNSAFE)):
            codes["403"] = ("permission_denied: this caller may not do this (a role or an API key's limits), or a "
                            "login session's request without its CSRF token.")
        if has_path or paginated:
            codes["404"] = ("not_found: " + ("no such resource of yours (or a malformed id)" if has_path else "")
                            + (" ; " if has_path and paginated else "")
                            + ("a page past the last one" if paginated else "") + ".")
        codes["405"] = "method_not_allowed: not a method of this path (the Allow header lists them)."
        if has_body:
            codes["413"] = "payload_too_large: the body is over the size limit (`details` gives the limit)."
            codes["415"] = "unsupported_media_type: the body is not application/json."
        codes["500"] = "internal_error: an unexpected failure on our side (never a traceback)."
        codes["503"] = ("service_unavailable: the database or the broker is briefly unreachable; try again after "
                        "Retry-After seconds.")
        return codes
