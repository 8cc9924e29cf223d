"""A webhook receiver on loopback (the tests' setting allows it), and a team to send to it."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from creditgate.core import runtime
from creditgate.credits import services as credits_services
from creditgate.credits.tests.conftest import make_user

README = Path(__file__).resolve().parents[3] / "README.md"


class Receiver:
    """An HTTP server that records every POST and answers with the next planned status (200 once
    the plan is used up); a 3xx answer redirects to `redirect_to`."""

    def __init__(self):
        self.requests: list[dict] = []
        self.plan: list[int] = []
        self.redirect_to = ""
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                              "body": body, "path": self.path})
                    status = receiver.plan.pop(0) if receiver.plan else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else f"no: {status}".encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"the receiver got {len(self.requests)} requests, expected {n}")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def hooks_env(transactional_db, seeded_catalog, sandbox, settings):
    """Jobs and deliveries on the in-process runner, committed rows, loopback receivers allowed,
    quick retries."""
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.CREDITGATE_WEBHOOK_RETRY_BASE_SECONDS = 0.05
    settings.CREDITGATE_WEBHOOK_TIMEOUT_SECONDS = 5
    settings.CREDITGATE_PUBLIC_URL = "http://testserver"
    yield
    runtime.wait_idle()


@pytest.fixture
def owner(hooks_env):
    return make_user("owner", credits=500)


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def member_of(owner, username: str):
    user = make_user(username)
    credits_services.account_member_add(account=credits_services.account_for_user(user=owner), user=user)
    return user


def readme_verify():
    """The verification snippet exactly as the README documents it."""
    text = README.read_text()
    block = re.search(r"<!-- webhook-verify -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert block, "the README's webhook verification snippet is missing"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md (webhook-verify)", "exec"), namespace)  # our own doc
    return namespace["verify"]


def event(request: dict) -> dict:
    return json.loads(request["body"])
