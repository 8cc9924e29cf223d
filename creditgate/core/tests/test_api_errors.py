"""Every response under /api/ is the contract's JSON error shape, whatever raised it; the page and
the admin keep Django's HTML. Through the whole Django stack (every middleware, the URL resolver,
authentication, DRF) with Django's test client, with DEBUG off as deployed and, where Django's
own behaviour differs, with DEBUG on too."""

import io
import json
import logging

import pytest
import redis.exceptions
from django.contrib.auth import get_user_model
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.db import InterfaceError, OperationalError
from django.test import Client
from rest_framework.authtoken.models import Token

from creditgate.core import logging as core_logging
from creditgate.core.parsers import MAX_DEPTH, json_depth_exceeds
from creditgate.credits import selectors as credits_selectors

pytestmark = pytest.mark.django_db

POST_URL = "/api/v1/text/generations/"  # an authenticated endpoint that reads a JSON body
GET_URL = "/api/v1/credits/balance/"


@pytest.fixture
def user():
    return get_user_model().objects.create_user(username="errors-user")


@pytest.fixture
def client(user):
    """An API client with a real token; exceptions become responses, as for a real caller."""
    token = Token.objects.create(user=user)
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token.key}")


@pytest.fixture(params=[False, True], ids=["DEBUG=false", "DEBUG=true"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def assert_error(response, status: int, code: str) -> dict:
    """The response is the contract's error: status, JSON content type, the three keys, no HTML or
    traceback. Returns its details."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].split(";")[0] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    text = response.content.decode()
    assert "Traceback" not in text and "<html" not in text.lower()
    return body["error"]["details"]


# --- 404 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/api/v1/no-such-endpoint/",
    "/api/nothing",
    "/api/v1/jobs/not-a-uuid/",
    "/api/v1/jobs/00000000-0000-0000-0000-000000000000/images/-1/",
    "/api/v1/jobs/00000000-0000-0000-0000-000000000000/",  # well-formed, no such job
])
def test_unknown_paths_and_malformed_ids_are_json_404s(client, debug, path):
    assert_error(client.get(path), 404, "not_found")


def test_the_page_and_the_admin_keep_htmls_404(client, user):
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")

    user.is_staff = True
    user.save()
    staff = Client()
    staff.force_login(user)
    response = staff.get("/admin/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


# --- the request itself ------------------------------------------------------------------------

def test_an_unsupported_media_type_is_a_json_415(client):
    response = client.post(POST_URL, "prompt=hi", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


def test_a_method_not_allowed_is_a_json_405(client):
    response = client.delete(POST_URL)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]


def test_a_body_over_the_limit_is_a_json_413_naming_the_limit(client, debug, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"prompt": "x" * 1000})
    details = assert_error(client.post(POST_URL, body, content_type="application/json"), 413, "payload_too_large")
    assert details == {"limit_bytes": 1000}


def test_a_body_nested_1000_deep_is_a_400_not_a_recursion_error(client):
    body = "[" * 1000 + "]" * 1000  # 2 KB; Python's json would overflow its recursion on it
    details = assert_error(client.post(POST_URL, body, content_type="application/json"), 400, "invalid_request")
    assert details == {"max_depth": MAX_DEPTH}

    # Objects count too, and a body that is merely malformed is still the ordinary 400.
    deep_object = '{"a":' * 100 + "1" + "}" * 100
    assert_error(client.post(POST_URL, deep_object, content_type="application/json"), 400, "invalid_request")
    assert_error(client.post(POST_URL, "{not json", content_type="application/json"), 400, "invalid_request")


def test_the_depth_bound_counts_only_real_nesting():
    assert not json_depth_exceeds("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert json_depth_exceeds("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    # Brackets inside strings (escaped quotes too) are text, not nesting.
    assert not json_depth_exceeds(json.dumps({"prompt": "[{" * 500 + '\\"' + "[" * 100}))
    assert not json_depth_exceeds(json.dumps([[1, 2]] * 1000))  # many, but shallow


def test_a_body_within_the_bound_still_reaches_validation(client):
    nested = {"prompt": "hello", "extra": [[[["deep but fine"]]]]}
    response = client.post(POST_URL, json.dumps(nested), content_type="application/json")
    assert response.status_code != 500 and response["Content-Type"] == "application/json"


# --- transient faults: 503 with Retry-After ---------------------------------------------------------

@pytest.mark.parametrize("error", [
    OperationalError("server closed the connection unexpectedly"),
    InterfaceError("connection already closed"),
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
], ids=lambda e: type(e).__module__.split(".")[0] + "." + type(e).__name__)
def test_a_transient_fault_in_a_view_is_a_503_with_retry_after(client, monkeypatch, error):
    def broken(**_):
        raise error

    monkeypatch.setattr(credits_selectors, "balance_get", broken)
    response = client.get(GET_URL)
    details = assert_error(response, 503, "service_unavailable")
    assert int(response["Retry-After"]) == details["retry_after"] > 0
    assert "127.0.0.1" not in response.content.decode()  # no address or driver message leaks out


def test_a_database_fault_before_the_view_is_a_503_too(client, monkeypatch):
    """The session/user lookup of a middleware hits the database first: Django's handler500."""
    def broken(self, request):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(AuthenticationMiddleware, "process_request", broken)
    response = client.get(GET_URL)
    details = assert_error(response, 503, "service_unavailable")
    assert response["Retry-After"] == str(details["retry_after"])


# --- anything else: 500 with the request id -------------------------------------------------------

@pytest.fixture
def log_lines():
    """The JSON lines the deployed logging writes (core.logging's formatter, formatting each record
    as it is logged, as the production handler does), collected from the root logger."""
    spec = dict(core_logging.logging_config(fmt="json", level="INFO")["formatters"]["structlog"])
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(spec.pop("()")(**spec))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in handler.stream.getvalue().splitlines() if line.startswith("{")]
    finally:
        root.removeHandler(handler)


def test_an_unexpected_exception_is_a_json_500_with_the_request_id_of_the_log_line(client, debug, monkeypatch,
                                                                                     log_lines):
    def broken(**_):
        provider_key = "sk-live-do-not-log"  # noqa: F841 (a local of a failing frame)
        raise RuntimeError("bug: /srv/secret/path")

    monkeypatch.setattr(credits_selectors, "balance_get", broken)
    response = client.get(GET_URL, HTTP_X_REQUEST_ID="support-case-42")
    details = assert_error(response, 500, "internal_error")
    assert details == {"request_id": "support-case-42"} and response["X-Request-ID"] == "support-case-42"
    assert "/srv/secret" not in response.content.decode()

    errors = [line for line in log_lines() if line["level"] == "error" and "exception" in line]
    assert errors, "the exception was not logged"
    assert all(line["request_id"] == "support-case-42" for line in errors)
    assert errors[0]["exception"][0]["exc_type"] == "RuntimeError"  # with its traceback, in the log only
    assert "sk-live-do-not-log" not in json.dumps(errors)  # frames' locals are not logged


def test_a_500_without_a_callers_id_carries_the_generated_one(client, monkeypatch):
    monkeypatch.setattr(credits_selectors, "balance_get", lambda **_: 1 / 0)
    response = client.get(GET_URL)
    details = assert_error(response, 500, "internal_error")
    assert details["request_id"] == response["X-Request-ID"] and len(details["request_id"]) == 32


def test_an_exception_in_a_middleware_is_a_json_500_too(client, debug, monkeypatch, log_lines):
    def broken(self, request):
        raise RuntimeError("middleware bug")

    monkeypatch.setattr(AuthenticationMiddleware, "process_request", broken)
    response = client.get(GET_URL)
    details = assert_error(response, 500, "internal_error")
    assert details["request_id"] == response["X-Request-ID"]
    errors = [line for line in log_lines() if line["level"] == "error" and "exception" in line]
    assert errors and all(line.get("request_id") == response["X-Request-ID"] for line in errors)

    # The page, meanwhile, keeps Django's HTML error page.
    page = Client(raise_request_exception=False).get("/accounts/login/")
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
