"""Request id: accepted from the caller's `X-Request-ID` (a load balancer's, a client's) when it
looks like an id, made up otherwise, and returned in the response's `X-Request-ID`.

django-structlog's RequestMiddleware (right after this one) binds it into structlog's context,
so every log line of the request carries it and `core.logging.request_id_current()` returns it.
"""

import re
import uuid

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware

from creditgate.core.exception_handler import (
    api_error_for_status,
    is_api_request,
    json_error_response,
)

# An id, not free text: a header is attacker-controlled and ends up on every log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class _AsyncCapable:
    """Sync and async: under ASGI (creditgate/asgi.py) a sync-only middleware would make Django run
    the rest of the request from a thread blocked until it ends, a waiting request included
    (generation/waiting.py); with both, the request stays on the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)  # type: ignore[type-var]  # Django's documented pattern for an instance


class RequestIdMiddleware(_AsyncCapable):
    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        request_id = self._request_id(request)
        # Bound here too (django-structlog binds it again further in): a line logged by the
        # middlewares in between, e.g. about an exception in one of them, carries it as well.
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    async def _acall(self, request):
        request_id = self._request_id(request)
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            response = await self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    @staticmethod
    def _request_id(request) -> str:
        request_id = request.META.get("HTTP_X_REQUEST_ID", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
            request.META["HTTP_X_REQUEST_ID"] = request_id
            request.__dict__.pop("headers", None)  # `request.headers` is cached from META
        return request_id


class ApiErrorMiddleware(_AsyncCapable):
    """The last line of the API's error shape: an error response under /api/ that is not JSON
    (Django's debug pages with DEBUG on, where handler404/500 are not used; any HTML error page a
    library returns) is replaced by the contract's JSON for its status. With DEBUG off, the DRF
    exception handler and the error views (core.views.error_*) have already answered in JSON.
    Right after RequestIdMiddleware, so it sees what every later middleware answers."""

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self._replace(request, self.get_response(request))

    async def _acall(self, request):
        return self._replace(request, await self.get_response(request))

    @staticmethod
    def _replace(request, response):
        if response.status_code >= 400 and is_api_request(request) and not _is_json(response):
            replacement = json_error_response(*api_error_for_status(response.status_code, request))
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response


def _is_json(response) -> bool:
    content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise (static files from STATIC_ROOT, or from the apps with DEBUG), sync and async:
    WhiteNoise's own middleware is sync only (see _AsyncCapable)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=None):
        if settings is None:
            super().__init__(get_response)
        else:
            super().__init__(get_response, settings=settings)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request):
        # A dict lookup in production; with DEBUG (autorefresh) a look at the apps' directories.
        static_file = (await sync_to_async(self.find_file)(request.path_info) if self.autorefresh
                       else self.files.get(request.path_info))
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)  # opens the file
        return await self.get_response(request)
