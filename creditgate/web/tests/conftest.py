"""The page's streamed text needs an ASGI server: /v1/chat/completions streams from the server's
event loop, which Django's WSGI live_server can only buffer (and loses the run's loop with it)."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from creditgate.core import runtime
from creditgate.openai_compat.tests.conftest import ThreadServer


@pytest.fixture
def stream_env(transactional_db, seeded_catalog, sandbox, settings):
    """page_env's world (committed rows, jobs in-process, the sandbox answering every provider
    call) served by uvicorn in a thread, as production serves it, with the apps' static files
    (what live_server's handler adds). Has `.url`, as live_server has."""
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    from creditgate.asgi import django_application

    server = ThreadServer()
    # Django's handler behind the static files' one, which takes no lifespan events.
    server.server.config.app = ASGIStaticFilesHandler(django_application)
    server.server.config.lifespan = "off"
    with server:
        yield server
    runtime.wait_idle()
