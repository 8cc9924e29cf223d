"""Structured logs: one JSON object per line in production, readable lines in development.

Every line, ours (structlog) or a library's (stdlib `logging`), goes through one formatter that
adds the ids bound in structlog's context variables: the request id (django-structlog binds it
per request, accepting the caller's `X-Request-ID`; `core.middleware.RequestIdMiddleware`
returns it), the user id, and whatever `log_context_bind` added (job, account, hold, provider
request). django-structlog copies that context into a Celery task's headers when it is enqueued
and binds it again in the worker, so a worker's lines carry the request id of the request that
queued the job.

Never log a key, a token or prompt text at INFO: log ids and sizes.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer

# Fields every line gets, for our own events and for the standard library's records alike.
_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]

LOG_FORMATS = ("json", "console")


def request_id_current() -> str | None:
    """The id of the request (or of the request that queued this task) being handled, if any."""
    return structlog.contextvars.get_contextvars().get("request_id")


def log_context_bind(**ids: str | int | None) -> None:
    """Add ids to every later log line of this request or task, e.g.
    `log_context_bind(job_id=job.pk, account_id=account.pk, hold_id=hold.pk)`.

    Ids only (each name ends in `_id`): a prompt or a key must never ride along on every line.
    `None` values are skipped. The web request's and the Celery task's context is cleared when it
    ends; code on a reused thread of its own must call `structlog.contextvars.clear_contextvars()`.
    """
    bad = [name for name in ids if not name.endswith("_id")]
    if bad:
        raise ValueError(f"log_context_bind takes ids only (names ending in _id), not {bad}")
    structlog.contextvars.bind_contextvars(**{k: str(v) for k, v in ids.items() if v is not None})


def structlog_configure() -> None:
    """structlog's loggers hand their events to the standard library's, so one `LOGGING`
    configuration (`logging_config`) formats and routes everything."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """The `LOGGING` dict: every record to stderr, formatted as `fmt` ("json" or "console")."""
    if fmt not in LOG_FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"CREDITGATE_LOG_FORMAT must be one of {LOG_FORMATS}, not {fmt!r}.")
    renderer: list[Any]
    if fmt == "json":
        # A traceback as a dict, without each frame's local variables: those hold prompts, API
        # keys and tokens (structlog's `dict_tracebacks` shows them).
        renderer = [structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
                    structlog.processors.JSONRenderer()]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=False)]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
                "foreign_pre_chain": _SHARED_PROCESSORS,
            },
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structlog"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own default handlers would print each of its lines a second time beside root's.
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            "django.db.backends": {"level": "WARNING"},
            # django-structlog logs every request (request_started / request_finished with its
            # request id, user id, status); Django's own "Not Found" lines would repeat them.
            "django.request": {"level": "ERROR"},
            # Its health checks log each failure with a traceback; readiness answers say what failed.
            "health_check": {"level": "ERROR"},
            # Each Celery task is logged by django-structlog (task_started / task_succeeded).
            "celery.app.trace": {"level": "WARNING"},
            "stripe": {"level": "WARNING"},  # the SDK logs every request at INFO
        },
    }


def celery_setup_logging(**_: Any) -> None:
    """Celery's `setup_logging` signal: a worker keeps Django's `LOGGING` (and so our format)
    instead of installing its own handlers."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


def level_name(level: str) -> str:
    name = level.upper()
    if not isinstance(logging.getLevelName(name), int):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"LOG_LEVEL must be a logging level such as INFO, not {level!r}.")
    return name
