"""Request ids and the log context, in-process (the deployed path is in web/tests/test_production.py)."""

import json
import logging

import pytest
import structlog
from django.http import HttpResponse
from django.test import RequestFactory
from django_structlog.middlewares import RequestMiddleware

from creditgate.core.logging import log_context_bind, logging_config, request_id_current
from creditgate.core.middleware import RequestIdMiddleware


def through_middleware(headers: dict) -> tuple[HttpResponse, dict]:
    """A request through the two middlewares in their settings order; what the view saw."""
    seen = {}

    def view(request):
        seen["request_id"] = request_id_current()
        return HttpResponse("ok")

    chain = RequestIdMiddleware(RequestMiddleware(view))
    return chain(RequestFactory().get("/x", headers=headers)), seen


def test_the_callers_request_id_is_used_and_returned():
    response, seen = through_middleware({"X-Request-ID": "lb-4f2a.9:1"})
    assert seen["request_id"] == "lb-4f2a.9:1"
    assert response["X-Request-ID"] == "lb-4f2a.9:1"
    assert request_id_current() is None  # cleared once the request is answered


@pytest.mark.parametrize("given", [None, "", "two words", "x" * 129, "id\nforged-log-line"])
def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(given):
    response, seen = through_middleware({"X-Request-ID": given} if given is not None else {})
    assert seen["request_id"] == response["X-Request-ID"]
    assert len(response["X-Request-ID"]) == 32 and response["X-Request-ID"] != given


def test_log_context_bind_takes_ids_only():
    structlog.contextvars.clear_contextvars()
    try:
        log_context_bind(job_id="0b9e", account_id=7, hold_id=None)
        assert structlog.contextvars.get_contextvars() == {"job_id": "0b9e", "account_id": "7"}
        with pytest.raises(ValueError, match="ids only"):
            log_context_bind(prompt="a red fox")
        assert "prompt" not in structlog.contextvars.get_contextvars()
    finally:
        structlog.contextvars.clear_contextvars()


def format_record(fmt: str, record: logging.LogRecord) -> str:

    config = logging_config(fmt=fmt, level="INFO")
    formatter_spec = dict(config["formatters"]["structlog"])
    factory = formatter_spec.pop("()")
    return factory(**formatter_spec).format(record)


def test_json_lines_carry_the_bound_ids_for_a_plain_logging_call_too():
    structlog.contextvars.bind_contextvars(request_id="r-1")
    log_context_bind(job_id="j-1")
    try:
        record = logging.LogRecord("creditgate.generation", logging.WARNING, __file__, 1,
                                   "job %s: image %s unreadable", ("j-1", 2), None)
        line = json.loads(format_record("json", record))
    finally:
        structlog.contextvars.clear_contextvars()
    assert line["event"] == "job j-1: image 2 unreadable"
    assert line["request_id"] == "r-1" and line["job_id"] == "j-1"
    assert line["level"] == "warning" and line["logger"] == "creditgate.generation"
    assert line["timestamp"].endswith("Z")


def test_development_lines_are_readable_not_json():
    record = logging.LogRecord("creditgate", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    text = format_record("console", record)
    assert "hello there" in text and not text.startswith("{")


def test_an_unknown_log_format_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="CREDITGATE_LOG_FORMAT"):
        logging_config(fmt="xml", level="INFO")
