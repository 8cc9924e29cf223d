"""The Procfile's web line as a process of its own, for tests on the real server (gunicorn with a
uvicorn worker, creditgate.asgi, one worker) with the test's sandbox and a short job lease, and a
count of its PostgreSQL connections."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading

from django.db import connection

from creditgate.generation.tests.test_crash_points import ROOT, worker_env
from creditgate.generation.tests.test_faults import free_port, wait_for_port
from creditgate.generation.tests.test_waits_under_asgi import _worker_pid


class Web:
    """`backend`: where its jobs go ("celery", or "inprocess": its own loop). `app_name` names its
    PostgreSQL connections (PeakConnections counts them); `env` adds settings."""

    def __init__(self, sandbox, tmp_path, *, backend: str, app_name: str | None = None, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"web-{self.port}.log"
        environ = {**worker_env(sandbox, backend=backend), **env}
        if app_name:
            environ["DATABASE_URL"] += ("&" if "?" in environ["DATABASE_URL"] else "?") + f"application_name={app_name}"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:creditgate.gunicorn_conf", "creditgate.asgi",
                 "-w", "1", "-b", f"127.0.0.1:{self.port}"],
                cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)
        self.worker_pid = _worker_pid(self.proc.pid)

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def kill(self) -> None:
        """As a crash or an OOM kill would: the worker first (no graceful stop), then its master."""
        for pid in (self.worker_pid, self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class PeakConnections:
    """While in the `with` block, the most PostgreSQL connections named `app_name` at once (`peak`),
    polled by a thread of its own, which closes its connection at the end (the test database is
    dropped after the test)."""

    def __init__(self, app_name: str):
        self.app_name, self.peak = app_name, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def _count(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [self.app_name])
            return cursor.fetchone()[0]

    def _watch(self) -> None:
        try:
            while not self._done.is_set():
                self.peak = max(self.peak, self._count())
                self._done.wait(0.05)
        finally:
            connection.close()

    def __enter__(self) -> PeakConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
