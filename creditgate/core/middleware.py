"""Request id: accepted from the caller's `X-Request-ID` (a load balancer's, a client's) when it
looks like an id, made up otherwise, and returned in the response's `X-Request-ID`.

django-structlog's RequestMiddleware (right after this one) binds it into structlog's context,
so every log line of the request carries it and `core.logging.request_id_current()` returns it.
"""

import re
import uuid

# An id, not free text: a header is attacker-controlled and ends up on every log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request.META.get("HTTP_X_REQUEST_ID", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
            request.META["HTTP_X_REQUEST_ID"] = request_id
            request.__dict__.pop("headers", None)  # `request.headers` is cached from META
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
