"""The /v1 tests talk to a real ASGI server (uvicorn, as the Procfile's worker class runs the app)
with OpenAI's own SDK. The server runs in a thread of the test process, so it shares the test
database, SQLite's included; the PostgreSQL-only tests start it as a process of its own."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from creditgate.credits import services as credits_services
from creditgate.generation.tests.conftest import gen_env, jobs_inprocess, make_user  # noqa: F401  (fixtures)
from creditgate.generation.tests.test_faults import free_port


class ThreadServer:
    def __init__(self):
        from creditgate.asgi import application

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=self.port, loop="asyncio",
                                                    lifespan="on", log_level="warning", http="h11"))
        self.thread = threading.Thread(target=self.server.run, name="v1-test-server", daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def v1_server(gen_env):  # noqa: F811
    with ThreadServer() as server:
        yield server


def api_key_for(user, *, monthly_cap: int | None = None) -> str:
    member = credits_services.member_for_user(user=user)
    _, secret = credits_services.api_key_create(actor=user, member=member, name="sdk", monthly_cap=monthly_cap)
    return secret


@pytest.fixture
def v1_user():
    return make_user("sdk-user")


@pytest.fixture
def v1_key(v1_user):
    return api_key_for(v1_user)
