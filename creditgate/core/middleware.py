"""Request id: accepted from the caller's `X-Request-ID` (a load balancer's, a client's) when it
looks like an id, made up otherwise, and returned in the response's `X-Request-ID`.

django-structlog's RequestMiddleware (right after this one) binds it into structlog's context,
so every log line of the request carries it and `core.logging.request_id_current()` returns it.
"""

import re
import uuid
from typing import Any

import csp.middleware
import django.contrib.auth.middleware
import django.contrib.messages.middleware
import django.contrib.sessions.middleware
import django.core.handlers.asgi
import django.middleware.clickjacking
import django.middleware.common
import django.middleware.csrf
import django.middleware.security
import django_prometheus.middleware
import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
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


# --- Django's and the libraries' middleware, their hooks run on the event loop ------------------


class _HooksOnTheLoop:
    """A MiddlewareMixin middleware (Django's own, django-prometheus', django-csp's) whose hooks
    run on the event loop under ASGI, not in a thread.

    Why: MiddlewareMixin's async path runs every process_request / process_view / process_response
    through sync_to_async, a thread hop each (about 160 µs of CPU measured alone, more with many
    requests in flight): 15 hops per request with the list in settings.MIDDLEWARE, which cost a
    paid job about a tenth of its CPU (bench/bench_paid_jobs.py). Django cannot know that a hook
    does no I/O; for the ones below we do: each was read (Django 5.2, django-prometheus 2.x,
    django-csp 4.x) and only reads the request or sets headers and counters. A hook that may
    touch the database (the session's save, the messages' store) says so in `response_in_thread`
    and is run in a thread, as before, when it will. Should one of them touch the ORM anyway,
    Django's async-safety check raises SynchronousOnlyOperation (a test fails), never blocks the
    loop. In sync mode (WSGI, the test client) nothing changes."""

    async_mode: bool  # MiddlewareMixin's
    get_response: Any

    def __init__(self, get_response):
        super().__init__(get_response)  # type: ignore[call-arg]
        if self.async_mode and hasattr(self, "process_view"):
            sync_view_hook = self.process_view  # the handler would run this sync hook in a thread

            async def process_view(request, view_func, view_args, view_kwargs):
                return sync_view_hook(request, view_func, view_args, view_kwargs)

            self.__dict__["process_view"] = process_view  # an instance's: what Django's handler picks up

    def response_in_thread(self, request) -> bool:
        return False

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_in_thread(request):
                return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            response = self.process_response(request, response)
        return response


class PrometheusBeforeMiddleware(_HooksOnTheLoop, django_prometheus.middleware.PrometheusBeforeMiddleware):
    pass


class PrometheusAfterMiddleware(_HooksOnTheLoop, django_prometheus.middleware.PrometheusAfterMiddleware):
    pass


class SecurityMiddleware(_HooksOnTheLoop, django.middleware.security.SecurityMiddleware):
    pass


class CSPMiddleware(_HooksOnTheLoop, csp.middleware.CSPMiddleware):
    pass


class SessionMiddleware(_HooksOnTheLoop, django.contrib.sessions.middleware.SessionMiddleware):
    """The session is loaded lazily, in whatever thread first reads it; it is saved (a query) only
    when it changed."""

    def response_in_thread(self, request) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class CommonMiddleware(_HooksOnTheLoop, django.middleware.common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_HooksOnTheLoop, django.middleware.csrf.CsrfViewMiddleware):
    """The CSRF secret is read from its cookie (CSRF_USE_SESSIONS is off: never a session read)."""


class AuthenticationMiddleware(_HooksOnTheLoop, django.contrib.auth.middleware.AuthenticationMiddleware):
    """request.user is lazy: the session and the user are read where it is first used."""


class MessageMiddleware(_HooksOnTheLoop, django.contrib.messages.middleware.MessageMiddleware):
    """Messages are stored (in the cookie, or in the session: a query) only when some were read or
    added."""

    def response_in_thread(self, request) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(_HooksOnTheLoop, django.middleware.clickjacking.XFrameOptionsMiddleware):
    pass


# settings.MIDDLEWARE's names -> what the ASGI handler loads for each.
ON_THE_LOOP: dict[str, type] = {
    f"{base.__module__}.{base.__name__}": cls
    for cls in (PrometheusBeforeMiddleware, PrometheusAfterMiddleware, SecurityMiddleware, CSPMiddleware,
                SessionMiddleware, CommonMiddleware, CsrfViewMiddleware, AuthenticationMiddleware,
                MessageMiddleware, XFrameOptionsMiddleware)
    for base in cls.__bases__[1:]
}


class ASGIHandler(django.core.handlers.asgi.ASGIHandler):
    """Django's ASGI handler (creditgate/asgi.py) with the middleware of settings.MIDDLEWARE that
    ON_THE_LOOP names loaded as their subclasses above. settings.MIDDLEWARE keeps Django's names:
    its checks look for those very strings (SecurityMiddleware's, CsrfViewMiddleware's,
    XFrameOptionsMiddleware's), and with a subclass named instead, check --deploy would skip the
    HSTS, SSL redirect and cookie checks as if there were no such middleware. Django reads the
    list once, here, at the handler's start, before it serves anything; the list is put back at once."""

    def load_middleware(self, is_async=False):
        named = settings.MIDDLEWARE
        settings.MIDDLEWARE = [f"{ON_THE_LOOP[path].__module__}.{ON_THE_LOOP[path].__name__}"
                               if path in ON_THE_LOOP else path for path in named]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = named
