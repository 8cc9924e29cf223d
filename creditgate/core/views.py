"""Operations endpoints: liveness, readiness, Prometheus metrics. Plain Django views (not under
/api/): a load balancer, an orchestrator and Prometheus call them, not users.

Also Django's error views (handler400/403/404/500 in creditgate/urls.py): what fails outside a view
(no route matches, a malformed id in the path, a body too large read by a middleware, an exception
in a middleware) answers in the API's JSON error shape under /api/, and Django's HTML pages elsewhere
(the page, the admin)."""

import asyncio
import dataclasses
import datetime
import hmac
import sys
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import requires_csrf_token
from django_prometheus.exports import ExportToDjangoView
from health_check import Cache, Database, HealthCheck, Storage
from health_check.exceptions import ServiceUnavailable

from creditgate.core.exception_handler import (
    api_error_for_exception,
    api_error_for_status,
    is_api_request,
    json_error_response,
)


@requires_csrf_token
def error_400(request, exception=None):
    if is_api_request(request):
        if exception is None:
            return json_error_response(*api_error_for_status(400, request))
        return json_error_response(*api_error_for_exception(exception, request))
    return defaults.bad_request(request, exception)


@requires_csrf_token
def error_403(request, exception=None):
    if is_api_request(request):
        return json_error_response(*api_error_for_status(403, request))
    return defaults.permission_denied(request, exception)


@requires_csrf_token
def error_404(request, exception=None):
    if is_api_request(request):
        return json_error_response(*api_error_for_status(404, request))
    return defaults.page_not_found(request, exception)


@requires_csrf_token
def error_500(request):
    """Django calls it while handling the exception (already logged, with the request id), so
    the exception is at hand: a transient one is a 503 with Retry-After."""
    if is_api_request(request):
        exception = sys.exc_info()[1]
        if exception is None:
            return json_error_response(*api_error_for_status(500, request))
        return json_error_response(*api_error_for_exception(exception, request))
    return defaults.server_error(request)


@never_cache
def health(request):
    """Liveness: the process answers. Touches no database, cache or broker, so a database outage
    does not make an orchestrator restart every web process."""
    return JsonResponse({"status": "ok"})


def _broker_connection(timeout: float):
    from creditgate.celery import app

    connection = app.connection_for_write()
    try:
        # kombu annotates timeout as int, but uses it as seconds (time() + timeout): a float is fine
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)  # type: ignore[arg-type]
    except Exception as exc:  # kombu wraps each transport's errors differently
        connection.release()
        raise ServiceUnavailable("cannot connect to the broker") from exc
    return connection


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection (django-health-check has no check for a Redis broker
    that is not also the cache)."""

    timeout = datetime.timedelta(seconds=3)

    def run(self):
        _broker_connection(self.timeout.total_seconds()).release()


@dataclasses.dataclass
class Workers(HealthCheck):
    """At least one Celery worker answers a ping. Not django-health-check's `Ping`: that one
    reconnects to a broker that is down for several seconds past its timeout, which holds the
    readiness answer; this one gives up at once when the broker does not accept a connection."""

    timeout = datetime.timedelta(seconds=3)

    def run(self):
        from creditgate.celery import app

        with _broker_connection(1.0) as connection:
            replies = app.control.ping(timeout=self.timeout.total_seconds() - 1, limit=1, connection=connection)
        if not replies:
            raise ServiceUnavailable("no Celery worker answered")


def readiness_checks() -> dict[str, HealthCheck]:
    """What must work for this process to serve: django-health-check's checks (database SELECT 1,
    cache set/get, a file written, read and deleted in the media storage), plus the broker and a
    worker answering a ping when jobs go to Celery."""
    checks: dict[str, HealthCheck] = {"database": Database(), "cache": Cache(), "storage": Storage()}
    if settings.CREDITGATE_JOBS_BACKEND == "celery":
        checks["broker"] = Broker()
        checks["workers"] = Workers()
    return checks


# Which providers the sandbox answers for in production (ids): registered by the providers app in
# its ready() (core imports no app).
sandboxed_in_production: Callable[[], list[str]] = list


def sandboxed_set(find: Callable[[], list[str]]) -> None:
    global sandboxed_in_production
    sandboxed_in_production = find


def _sandboxed() -> list[str]:
    try:
        return sandboxed_in_production()
    except DatabaseError:  # the database check says so already
        return []


@never_cache
async def ready(request):
    """Readiness: 200 when every check passes, else 503; JSON naming each check's state. Messages
    are django-health-check's short ones (no address, no credential). With the sandbox on in
    production, `sandboxed` names the providers it answers for (ids only): ready, but not real."""
    checks = readiness_checks()
    results = await asyncio.gather(*(check.get_result() for check in checks.values()))
    states = {name: str(result.error) if result.error else "ok" for name, result in zip(checks, results, strict=True)}
    ok = all(state == "ok" for state in states.values())
    body: dict = {"status": "ok" if ok else "unavailable", "checks": states}
    sandboxed = await sync_to_async(_sandboxed)() if settings.CREDITGATE_SANDBOX else []
    if sandboxed:
        body["sandboxed"] = sandboxed
    return JsonResponse(body, status=200 if ok else 503)


def metrics(request):
    """Prometheus exposition of request and business metrics (every process's, in multiprocess
    mode). Not public: 404 unless CREDITGATE_METRICS_TOKEN is set, then only with
    `Authorization: Bearer <token>`."""
    token = settings.CREDITGATE_METRICS_TOKEN
    if not token:
        raise Http404
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = HttpResponse("A bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return ExportToDjangoView(request)
