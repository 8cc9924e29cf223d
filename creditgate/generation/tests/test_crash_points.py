"""Workers killed at each named step of the charge path, with real processes.

A worker process (crash_worker.py) dies with os._exit at the step, as with SIGKILL. Then a new
worker and recovery take over, and each test asserts what a user and an operator would check:
the job ends final, charged exactly for what was delivered, nothing is left held, the provider
was not asked again for work already delivered, and the reconciliation audit is clean.

- Celery (PostgreSQL + Redis): a real `celery worker` process dies; a second one finishes.
- In-process (any database, SQLite included): the process running the job dies; the next
  process's sweep recovers it ("the next start").
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from creditgate.catalog.models import AIModelConfig
from creditgate.core import reconciliation, runtime
from creditgate.generation import intake, services
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance, make_user

ROOT = Path(__file__).resolve().parents[3]
LEASE_SECONDS = 2
STEPS = ["claimed", "answered", "stored", "settling", "settled"]

pytestmark = pytest.mark.usefixtures("gen_env")


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    return f"sqlite:///{s['NAME']}"


def worker_env(sandbox, *, crash_at: str | None = None, once: Path | None = None, backend: str) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "CREDITGATE_JOBS_BACKEND": backend,
        "CREDITGATE_SANDBOX": "true",
        "CREDITGATE_SANDBOX_URL": sandbox.url,
        "CREDITGATE_PROVIDER_RETRY_BASE_DELAY": "0.01",
        "CREDITGATE_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "CREDITGATE_JOB_SWEEP_SECONDS": "0",
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "CREDITGATE_VAR_DIR": str(django_settings.VAR_DIR),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("CREDITGATE_TEST_CRASH_AT", None)
    if crash_at:
        env["CREDITGATE_TEST_CRASH_AT"] = crash_at
    if once:
        env["CREDITGATE_TEST_CRASH_ONCE"] = str(once)
    return env


class CeleryWorker:
    def __init__(self, sandbox, log: Path, *, crash_at: str | None = None, once: Path | None = None,
                 pool: str = "threads"):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "creditgate.generation.tests.crash_worker", "celery", f"--pool={pool}",
                 "--concurrency=2", "--loglevel=WARNING", "--without-heartbeat", "--without-gossip",
                 "--without-mingle"],
                cwd=ROOT, env=worker_env(sandbox, crash_at=crash_at, once=once, backend="celery"),
                stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def celery_env(settings):
    if connection.vendor != "postgresql" or not django_settings.REDIS_URL:
        pytest.skip("needs PostgreSQL and REDIS_URL (run by .ci/run)")
    from creditgate.celery import app

    settings.CREDITGATE_JOBS_BACKEND = "celery"
    settings.CREDITGATE_JOB_RETRY_DELAY_SECONDS = 0
    app.control.purge()  # messages left by earlier tests name jobs of a flushed database
    workers: list[CeleryWorker] = []
    yield workers
    for worker in workers:
        worker.stop()


def three_basic_images_in_three_calls(user):
    """Three Runware images, one per call: each answer is stored as it arrives, so every step of
    the path (including "stored") happens, and unanswered calls can be looked up by task id."""
    AIModelConfig.objects.filter(quality_tier="basic", is_active=True).update(max_images_per_call=1)
    job, _ = intake.job_create_images(user=user, prompt="foxes in snow", tier="basic", count=3)
    return job


def wait_final(job, *, sweep: bool, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.is_final:
            return job
        if sweep:
            services.jobs_sweep()
        time.sleep(0.3)
    raise AssertionError(f"job {job.pk} still {job.status} after {timeout}s")


def assert_charged_exactly_once(job, user, sandbox, *, images: int, price: int, start: int) -> None:
    assert (job.status, job.credits_charged, job.images.count()) == ("succeeded", images * price, images)
    assert sorted(job.images.values_list("index", flat=True)) == list(range(images))
    assert balance(user) == {"balance": start - images * price, "held": 0, "available": start - images * price}
    assert reconciliation.reconciliation_audit() == []


@pytest.mark.postgres
@pytest.mark.celery
@pytest.mark.parametrize("step", STEPS)
def test_a_celery_worker_killed_at_each_step_is_recovered(celery_env, sandbox, tmp_path, step):
    user = make_user(credits=20)
    first = CeleryWorker(sandbox, tmp_path / "first.log", crash_at=step)
    celery_env.append(first)
    job = three_basic_images_in_three_calls(user)
    assert first.proc.wait(timeout=120) == 137, first.output()  # died at the step
    job.refresh_from_db()
    assert job.status == ("succeeded" if step == "settled" else "running")
    assert balance(user)["balance"] == 20 - (3 if step == "settled" else 0)  # nothing charged mid-way

    second = CeleryWorker(sandbox, tmp_path / "second.log")
    celery_env.append(second)
    job = wait_final(job, sweep=True)
    assert_charged_exactly_once(job, user, sandbox, images=3, price=1, start=20)
    # Each image was generated once: answers the dead worker never stored were fetched by task id.
    assert sandbox.stats["runware.imageInference"] == 3, second.output()
    if step in ("answered", "stored", "settling"):
        assert sandbox.stats.get("runware.getResponse", 0) >= 1


@pytest.mark.postgres
@pytest.mark.celery
def test_a_job_whose_worker_process_died_is_recovered_and_resumes(celery_env, sandbox, tmp_path):
    """Prefork: the pool's child dies while the provider answers. Its task had handed the job to
    the child's loop and was acknowledged, so Celery has nothing to give back: the sweep takes
    the job over once the dead run's lease lapses, queues it again, and the next run fetches the
    answer by its task id: no second generation."""
    user = make_user(credits=20)
    worker = CeleryWorker(sandbox, tmp_path / "prefork.log", crash_at="answered", once=tmp_path / "crashed",
                          pool="prefork")
    celery_env.append(worker)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    job = wait_final(job, sweep=True, timeout=45)
    assert (tmp_path / "crashed").exists(), worker.output()
    assert (job.attempts, job.credits_charged) == (2, 2), worker.output()
    assert_charged_exactly_once(job, user, sandbox, images=2, price=1, start=20)
    assert sandbox.stats["runware.imageInference"] == 1


@pytest.mark.postgres
@pytest.mark.celery
def test_openai_answers_lost_with_a_killed_worker_are_asked_for_again_but_stored_ones_are_not(
        celery_env, sandbox, tmp_path):
    """OpenAI cannot look a request up: an answer the dead worker had not stored is asked for
    again (we may pay OpenAI twice; the user pays once), a stored image is never asked again."""
    AIModelConfig.objects.filter(quality_tier="quality", is_active=True).update(max_images_per_call=1)
    user = make_user(credits=50)
    first = CeleryWorker(sandbox, tmp_path / "first.log", crash_at="stored")
    celery_env.append(first)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="quality", count=3)
    assert first.proc.wait(timeout=120) == 137, first.output()
    stored = job.images.count()
    asked_before = sandbox.stats["openai.images.generations"]

    celery_env.append(CeleryWorker(sandbox, tmp_path / "second.log"))
    job = wait_final(job, sweep=True)
    assert_charged_exactly_once(job, user, sandbox, images=3, price=5, start=50)
    assert stored >= 1
    assert sandbox.stats["openai.images.generations"] - asked_before == 3 - stored


@pytest.mark.postgres
@pytest.mark.celery
def test_job_runs_on_a_real_celery_worker(celery_env, sandbox, tmp_path):
    worker = CeleryWorker(sandbox, tmp_path / "worker.log")
    celery_env.append(worker)
    user = make_user(credits=50)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="quality", count=3)
    job = wait_final(job, sweep=False)
    assert job.status == "succeeded", worker.output()
    assert_charged_exactly_once(job, user, sandbox, images=3, price=5, start=50)


@pytest.mark.parametrize("step", STEPS)
def test_the_in_process_runner_killed_at_each_step_recovers_on_the_next_start(sandbox, monkeypatch, settings,
                                                                              step):
    settings.CREDITGATE_JOB_RETRY_DELAY_SECONDS = 0
    user = make_user(credits=20)
    real_enqueue = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # the dying process runs it, below
    job = three_basic_images_in_three_calls(user)

    died = subprocess.run([sys.executable, "-m", "creditgate.generation.tests.crash_worker", "run", str(job.pk)],
                          cwd=ROOT, env=worker_env(sandbox, crash_at=step, backend="inprocess"),
                          capture_output=True, text=True, timeout=60)
    assert died.returncode == 137, died.stdout + died.stderr

    # The next start of the service: its sweep recovers what the dead process left.
    monkeypatch.setattr(runtime, "enqueue", real_enqueue)
    job.refresh_from_db()
    if not job.is_final:
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now())  # (not waiting out the lease)
    services.jobs_sweep()
    runtime.wait_idle()
    job.refresh_from_db()
    assert_charged_exactly_once(job, user, sandbox, images=3, price=1, start=20)
    assert sandbox.stats["runware.imageInference"] == 3
