"""The broker and the database failing under a running service (PostgreSQL + Redis, real processes).

- The broker is down when a job is posted: the POST still answers 202 (the job and its hold are
  committed, the hand-off is owed), a retry with the same Idempotency-Key returns the same job,
  and once the broker is back the sweep hands it over and a worker runs it.
- The database drops every connection of the service, several times, while jobs run: every job
  still finishes, charged exactly for what it delivered.
"""

import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.authtoken.models import Token

from creditgate.core import reconciliation
from creditgate.generation import intake
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance, make_user
from creditgate.generation.tests.test_crash_points import ROOT, CeleryWorker, wait_final, worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.celery, pytest.mark.usefixtures("gen_env")]


@pytest.fixture
def pg_redis(settings):
    if connection.vendor != "postgresql" or not django_settings.REDIS_URL:
        pytest.skip("needs PostgreSQL and REDIS_URL (run by .ci/run)")
    settings.CREDITGATE_JOB_RETRY_DELAY_SECONDS = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Redis server of this test's own, on its own port, that the test stops and starts."""

    def __init__(self, tmp_path: Path):
        self.port, self.dir = free_port(), tmp_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_broker_down_at_the_post_the_job_is_accepted_and_runs_when_the_broker_is_back(pg_redis, sandbox, tmp_path):
    broker = Broker(tmp_path)
    env = {**worker_env(sandbox, backend="celery"), "REDIS_URL": broker.url, "DEBUG": "true"}
    port = free_port()
    with open(tmp_path / "web.log", "w") as out:
        web = subprocess.Popen([sys.executable, "-m", "gunicorn", "creditgate.wsgi", "-w", "2",
                                "-b", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    worker = None
    try:
        wait_for_port(port)
        user = make_user(credits=20)
        token = Token.objects.create(user=user).key
        key = str(uuid.uuid4())

        def post():
            return requests.post(f"http://127.0.0.1:{port}/api/v1/images/generations/", timeout=30,
                                 json={"prompt": "a red fox", "tier": "basic", "count": 2},
                                 headers={"Authorization": f"Token {token}", "Idempotency-Key": key})

        for _ in range(4):  # both gunicorn workers warmed up (URLs, catalog), so the timing below is the hand-off's
            assert requests.post(f"http://127.0.0.1:{port}/api/v1/images/generations/", timeout=30,
                                 json={"prompt": "x", "tier": "basic", "count": 0},
                                 headers={"Authorization": f"Token {token}"}).status_code == 400

        started = time.monotonic()
        first = post()  # the broker is not running at all
        assert first.status_code == 202, first.text
        assert time.monotonic() - started < 10  # the hand-off gave up quickly
        job = Job.objects.get(pk=first.json()["id"])
        assert (job.status, job.dispatched_at) == ("queued", None)  # durable, owed to the queue
        assert balance(user)["held"] == 2

        again = post()
        assert (again.status_code, again.json()["id"], again.headers.get("Idempotent-Replayed")) == (
            202, str(job.pk), "true")
        assert Job.objects.count() == 1 and balance(user)["held"] == 2  # no second job, no second hold

        broker.start()
        with open(tmp_path / "worker.log", "w") as out:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "creditgate", "worker", "--pool=threads", "--concurrency=2",
                 "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        # The sweep, as beat runs it, in its own process against the same broker.
        sweep = subprocess.run([sys.executable, "manage.py", "release_stale_holds"], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=60)
        assert "handed 1 to the queue" in sweep.stdout, sweep.stdout + sweep.stderr
        job = wait_final(job, sweep=False)
        assert (job.status, job.credits_charged) == ("succeeded", 2), (tmp_path / "worker.log").read_text()[-2000:]
        final = post()  # the same key, later: the same, finished job
        assert (final.json()["id"], final.json()["status"]) == (str(job.pk), "succeeded")
        assert balance(user) == {"balance": 18, "held": 0, "available": 18}
        assert reconciliation.reconciliation_audit() == []
    finally:
        for proc in (web, worker):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
        broker.stop()


def test_database_connections_terminated_during_runs_every_job_still_finishes(pg_redis, sandbox, settings, tmp_path):
    settings.CREDITGATE_JOBS_BACKEND = "celery"
    from creditgate.celery import app

    app.control.purge()
    sandbox.configure(latency_ms=700)
    worker = CeleryWorker(sandbox, tmp_path / "worker.log")
    try:
        user = make_user(credits=500)

        jobs = [intake.job_create_images(user=user, prompt=f"fox {i}", tier=tier, count=2)[0]
                for i, tier in enumerate(["basic", "quality", "premium", "basic", "quality", "basic"])]
        jobs.append(intake.job_create_text(user=user, prompt="Write about ledgers.", max_tokens=200)[0])
        killed = 0
        for _ in range(8):  # while the worker waits on the provider and writes what arrives
            time.sleep(0.4)
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                killed += cursor.fetchone()[0]
        assert killed > 0
        finished = [wait_final(job, sweep=True, timeout=90) for job in jobs]
        assert [j.status for j in finished] == ["succeeded"] * len(jobs), worker.output()
        spent = sum(j.credits_charged for j in finished)
        assert spent == 2 * (1 + 5 + 15 + 1 + 5 + 1) + finished[-1].credits_charged
        assert balance(user) == {"balance": 500 - spent, "held": 0, "available": 500 - spent}
        assert reconciliation.reconciliation_audit() == []
    finally:
        worker.stop()
        # The terminations also killed the idle connections of this test process's own pool, which
        # psycopg's pool replaces only as it finds them dead, backing off between attempts; the next
        # test gets a fresh pool instead of waiting that out.
        if getattr(connection, "pool", None) is not None:  # PostgreSQL's wrapper, pooled
            connection.close()
            connection.close_pool()  # type: ignore[attr-defined]
