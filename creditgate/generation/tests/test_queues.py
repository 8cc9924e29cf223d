"""Two Celery queues: the paid jobs on `jobs`, everything that keeps the books and recovers lost
work on `housekeeping`, each consumed by its own worker line of the Procfile, so that a backlog of
jobs never delays the sweep that recovers a lost one."""

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from redis import Redis

from creditgate.celery import app
from creditgate.generation import intake
from creditgate.generation.models import Job, JobStatus
from creditgate.generation.tests.conftest import make_user
from creditgate.generation.tests.test_crash_points import database_url

ROOT = Path(__file__).resolve().parents[3]
PROCFILE = (ROOT / "Procfile").read_text()


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def test_only_paid_jobs_go_to_the_jobs_queue():
    app.loader.import_default_modules()  # every app's tasks, as a worker has them
    names = sorted(name for name in app.tasks if name.startswith("creditgate."))
    queues = {name: queue_of(name) for name in names}
    assert queues.pop("creditgate.generation.tasks.run_job") == "jobs"
    # The sweep, the audit, webhook deliveries, emails, rollups, the model check: all housekeeping.
    assert {"creditgate.generation.tasks.sweep_jobs", "creditgate.webhooks.tasks.deliver"} <= set(queues)
    assert set(queues.values()) == {"housekeeping"}, queues


def test_the_procfile_runs_one_worker_per_queue_and_beat_sends_to_housekeeping():
    lines = dict(line.split(": ", 1) for line in PROCFILE.splitlines() if line.strip())
    assert "-Q jobs" in lines["worker"] and "-Q housekeeping" in lines["housekeeping"]
    for entry in django_settings.CELERY_BEAT_SCHEDULE.values():
        assert queue_of(str(entry["task"])) == "housekeeping", entry


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_lost_job_is_recovered_while_ten_thousand_jobs_wait_in_the_queue(seeded_catalog, settings, tmp_path):
    """No worker serves `jobs` (or all of them are busy): 10,000 hand-overs wait there. A job
    whose worker died (its lease lapsed) is still taken over by the sweep on `housekeeping`."""
    if connection.vendor != "postgresql" or not django_settings.REDIS_URL:
        pytest.skip("needs PostgreSQL and REDIS_URL (run by .ci/run)")
    settings.CREDITGATE_JOBS_BACKEND = "celery"
    app.control.purge()
    user = make_user("lost")
    job, _ = intake.job_create_images(user=user, prompt="a fox", tier="basic", count=1)
    # Its worker claimed it and died: running, under a lease that has lapsed.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, attempts=1, lease_token=uuid.uuid4(),
                                         lease_expires_at=timezone.now() - dt.timedelta(seconds=1))
    # 10,000 hand-overs waiting: one real message, copied (sending each would take a minute here).
    redis = Redis.from_url(django_settings.REDIS_URL)
    app.send_task("creditgate.generation.tasks.run_job", args=[str(uuid.uuid4())])
    message = redis.lindex("jobs", 0)
    assert message is not None
    with redis.pipeline(transaction=False) as pipe:
        for _ in range(9_999):
            pipe.lpush("jobs", message)
        pipe.execute()
    assert redis.llen("jobs") >= 10_000

    log = tmp_path / "housekeeping.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "creditgate", "worker", "-Q", "housekeeping", "--pool=threads",
             "--concurrency=2", "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": django_settings.REDIS_URL,
                 "CREDITGATE_JOBS_BACKEND": "celery", "CREDITGATE_VAR_DIR": str(django_settings.VAR_DIR),
                 "LOG_LEVEL": "WARNING"})
    try:
        app.send_task("creditgate.generation.tasks.sweep_jobs")  # as beat does every 15 s
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.status != JobStatus.RUNNING:
                break
            time.sleep(0.2)
        assert job.status == JobStatus.QUEUED, log.read_text()[-3000:]  # taken over: it goes round again
        # The housekeeping worker took none of the waiting jobs.
        assert redis.llen("jobs") >= 10_000
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        app.control.purge()
