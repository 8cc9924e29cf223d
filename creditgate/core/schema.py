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

    # --- Tags and summaries: one rule for every operation, so no view repeats them ---------------

    def get_tags(self) -> list[str]:
        """The operation's group in the docs: by the module its view lives in (the app, or the
        part of an app with a tag of its own), most specific first."""
        module = type(self.view).__module__.removeprefix("creditgate.")
        for prefix, tag in _TAGS_BY_MODULE:
            if module == prefix or module.startswith(prefix + "."):
                return [tag]
        return super().get_tags()

    def get_description(self) -> str | None:  # type: ignore[override]  # the stubs say str; drf-spectacular allows None
        return _DESCRIPTIONS.get(f"{self.method} {self.path}") or super().get_description()

    def get_summary(self) -> str | None:
        """The one line the docs show beside the path: the view's own (extend_schema), else this
        module's table, else the first sentence of the view's docstring, else words made from the
        method and the path."""
        summary = super().get_summary() or _SUMMARIES.get(f"{self.method} {self.path}")
        if summary:
            return summary
        first = _first_sentence(self.get_description() or "")
        if first:
            return first
        return _summary_from_path(self.method, self.path, listing=self._is_list_view())


# (module below creditgate., tag): the first that matches names an operation's group. The tags'
# descriptions and order are SPECTACULAR_SETTINGS["TAGS"] (settings.py).
_TAGS_BY_MODULE = [
    ("credits.team_apis", "Team"),
    ("credits.usage_api", "Credits"),
    ("reports.usage_api", "Credits"),
    ("credits", "Credits"),
    ("generation", "Generation"),
    ("catalog", "Catalog"),
    ("providers.apis", "Catalog"),
    ("billing", "Buying credits"),
    ("webhooks", "Webhooks"),
]


_GENERATION = ("Checked and priced like the estimate (POST /api/v1/credits/estimate/), then held: the most it can "
               "cost is reserved before any provider is called, what is delivered is charged, the rest released. "
               "Answers 202 with the job; follow it with GET /api/v1/jobs/{id}/?wait=N, or send `Prefer: wait=N`. "
               "With an Idempotency-Key, a retried request returns the first job and is charged once.")
# Descriptions of operations whose view's docstring is about the code, not the caller.
_DESCRIPTIONS = {
    "POST /api/v1/images/generations/": "`count` images of a quality tier; the tier's models and its one price are "
                                        "the catalog's. " + _GENERATION,
    "POST /api/v1/text/generations/": "A text by the administrator's default text model, charged "
                                      "ceil(tokens / tokens_per_credit). " + _GENERATION,
    "POST /api/v1/articles/generations/": "A text plus `image_count` images of a tier (at most the settings' "
                                          "images per article), charged as the sum of both. " + _GENERATION,
    "POST /api/v1/credits/estimate/": "What a generation request would hold (`credits` for images, `credits_max` "
                                      "for text and articles), checked by the same rules as the request itself, and "
                                      "`limit`: of the account's available credits, the member's monthly cap and "
                                      "the API key's, the one that allows the least, and whether it covers this.",
    "GET /api/v1/credits/balance/": "`available` can be spent; `held` is reserved by running jobs; `balance` is "
                                    "their sum.",
    "GET /api/v1/jobs/{job_id}/": "The job as it is now; with `?wait=N` the answer waits until the job is final "
                                  "(or N seconds).",
}

# Operations whose docstring does not start with a summary (or has none), by "METHOD path".
_SUMMARIES = {
    "GET /api/v1/system/ai-config/": "What can be generated now, and its prices",
    "GET /api/v1/credits/balance/": "Your balance: available, held and their sum",
    "GET /api/v1/credits/transactions/": "Your account's ledger, newest first",
    "GET /api/v1/credits/usage/": "Credits spent per day or per tier",
    "POST /api/v1/credits/estimate/": "Price a request, and the limit that binds, before sending it",
    "POST /api/v1/images/generations/": "Generate images of a tier",
    "POST /api/v1/text/generations/": "Generate a text with the default text model",
    "POST /api/v1/articles/generations/": "Generate an article: a text with images of a tier",
    "GET /api/v1/jobs/": "Your jobs, newest first",
    "GET /api/v1/jobs/{job_id}/": "One job: its status, results and charge (long poll with ?wait=)",
    "GET /api/v1/jobs/{job_id}/images/{index}/": "A job's stored image file",
    "GET /api/v1/credits/packs/": "The credit packs for sale",
    "POST /api/v1/credits/checkout/": "Start buying a pack (Stripe Checkout)",
    "GET /api/v1/credits/checkout/{checkout_id}/": "A checkout's status",
    "GET /api/v1/credits/low-balance-alert/": "Your low-balance email setting",
    "PUT /api/v1/credits/low-balance-alert/": "Set or switch off the low-balance email",
    "GET /api/v1/credits/shortfall/": "Credits a refund left owed",
    "POST /api/v1/webhooks/stripe/": "Stripe's events (signed by Stripe)",
    "GET /api/v1/account/members/": "The account's members and what each used this month",
    "GET /api/v1/account/members/{member_id}/": "One member and what they used this month",
    "PATCH /api/v1/account/members/{member_id}/": "Set a member's monthly cap or role (owners)",
    "GET /api/v1/account/api-keys/": "The API keys you manage",
    "POST /api/v1/account/api-keys/": "Create an API key (shown once)",
    "GET /api/v1/account/api-keys/{key_id}/": "One API key and what it used this month",
    "PATCH /api/v1/account/api-keys/{key_id}/": "Rename an API key or change its cap",
    "POST /api/v1/account/api-keys/{key_id}/revoke/": "Revoke an API key",
    "GET /api/v1/webhooks/endpoints/": "The account's webhook endpoints",
    "POST /api/v1/webhooks/endpoints/": "Register a webhook endpoint (owners)",
    "GET /api/v1/webhooks/endpoints/{endpoint_id}/": "One webhook endpoint",
    "PATCH /api/v1/webhooks/endpoints/{endpoint_id}/": "Change a webhook endpoint (owners)",
    "DELETE /api/v1/webhooks/endpoints/{endpoint_id}/": "Remove a webhook endpoint (owners)",
    "POST /api/v1/webhooks/endpoints/{endpoint_id}/test/": "Send a signed test event to an endpoint (owners)",
    "GET /api/v1/webhooks/deliveries/": "Webhook deliveries, newest first",
    "GET /api/v1/webhooks/deliveries/{delivery_id}/": "One webhook delivery with every attempt",
}


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for end in (". ", ": "):
        if end in text:
            text = text.split(end, 1)[0] + ("." if end == ". " else "")
            break
    text = text.rstrip(".")
    return text if len(text) <= 120 else ""


_VERBS = {"GET": "Get", "POST": "Create", "PUT": "Set", "PATCH": "Change", "DELETE": "Delete"}


def _summary_from_path(method: str, path: str, *, listing: bool) -> str:
    """"List jobs", "Get job", "Create estimate": the method's verb and the path's last named part."""
    parts = [p for p in path.strip("/").split("/") if p and not p.startswith("{")]
    noun = parts[-1].replace("-", " ").replace("_", " ") if parts else "resource"
    if path.rstrip("/").endswith("}") and noun.endswith("s"):
        noun = noun[:-1]  # /jobs/{id}/: one job
    verb = "List" if listing and method == "GET" else _VERBS.get(method, method.title())
    return f"{verb} {noun}"
