"""Jobs whose worker died, and jobs on a real Celery worker."""

import datetime as dt
import os
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from creditgate.generation import dispatch, services
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance, make_user


@pytest.fixture
def dead_workers(monkeypatch):
    """Jobs are accepted but never picked up, as if the worker died."""
    monkeypatch.setattr(dispatch, "enqueue", lambda job_id: None)


@pytest.mark.usefixtures("gen_env", "dead_workers")
@pytest.mark.parametrize("died_while", ["queued", "running"])
def test_reaper_releases_the_hold_of_a_job_whose_worker_died(died_while):
    user = make_user(credits=20)
    job, _ = services.job_create_images(user=user, prompt="foxes", tier="premium", count=1)
    if died_while == "running":
        Job.objects.filter(pk=job.pk).update(status="running", started_at=timezone.now())
    assert balance(user) == {"balance": 20, "held": 15, "available": 5}

    assert services.jobs_reap_stale() == services.Reaped(holds_expired=0, jobs_finished=0)  # not stale yet

    later = timezone.now() + dt.timedelta(seconds=django_settings.CREDITGATE_HOLD_TTL_SECONDS + 1)
    assert services.jobs_reap_stale(now=later) == services.Reaped(holds_expired=1, jobs_finished=1)

    job.refresh_from_db()
    assert job.status == "failed"
    assert job.credits_charged == 0
    assert "did not finish in time" in job.error_message
    assert balance(user) == {"balance": 20, "held": 0, "available": 20}
    assert services.jobs_reap_stale(now=later) == services.Reaped(holds_expired=0, jobs_finished=0)  # once


@pytest.mark.usefixtures("gen_env", "dead_workers")
def test_release_stale_holds_command_and_beat_task_finish_dead_jobs(capsys):
    from django.core.management import call_command

    from creditgate.generation.tasks import reap_stale_jobs

    user = make_user(credits=20)
    job, _ = services.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    Job.objects.filter(pk=job.pk).update(status="running")
    job.hold.__class__.objects.filter(pk=job.hold_id).update(expires_at=timezone.now() - dt.timedelta(minutes=1))

    call_command("release_stale_holds")
    assert "Expired 1 stale hold(s); finished 1 job(s)." in capsys.readouterr().out
    assert reap_stale_jobs() == 0
    job.refresh_from_db()
    assert job.status == "failed"
    assert balance(user) == {"balance": 20, "held": 0, "available": 20}


@pytest.mark.usefixtures("gen_env", "dead_workers")
def test_in_process_mode_reaps_on_its_own(settings):
    user = make_user(credits=20)
    job, _ = services.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    job.hold.__class__.objects.filter(pk=job.hold_id).update(expires_at=timezone.now() - dt.timedelta(minutes=1))

    settings.CREDITGATE_INPROCESS_REAP_SECONDS = 0.1
    dispatch._executor()  # the runner starts its reaper thread with its pool
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not job.is_final:
        time.sleep(0.1)
        job.refresh_from_db()
    assert job.status == "failed"
    assert balance(user) == {"balance": 20, "held": 0, "available": 20}


@pytest.mark.usefixtures("gen_env")
def test_a_late_worker_cannot_charge_an_expired_hold(dead_workers):
    user = make_user(credits=20)
    job, _ = services.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    services.jobs_reap_stale(now=timezone.now() + dt.timedelta(days=1))
    services.job_run(job_id=job.pk)  # the worker comes back: the job is final, nothing runs
    job.refresh_from_db()
    assert job.status == "failed"
    assert balance(user)["available"] == 20


@pytest.mark.celery
@pytest.mark.usefixtures("gen_env")
def test_job_runs_on_a_real_celery_worker(settings, sandbox, tmp_path):
    if connection.vendor != "postgresql" or not django_settings.REDIS_URL:
        pytest.skip("needs PostgreSQL and REDIS_URL (run by .ci/run)")
    settings.CREDITGATE_JOBS_BACKEND = "celery"
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "CREDITGATE_SANDBOX": "true",
        "CREDITGATE_SANDBOX_URL": sandbox.url,
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "CREDITGATE_VAR_DIR": str(django_settings.VAR_DIR),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "creditgate", "worker", "--pool=threads", "--concurrency=2",
         "--loglevel=WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        env=env, stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT)
    try:
        user = make_user(credits=50)
        job, _ = services.job_create_images(user=user, prompt="foxes", tier="quality", count=3)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job.refresh_from_db()
            if job.is_final:
                break
            time.sleep(0.2)
        assert job.status == "succeeded", (tmp_path / "worker.log").read_text()[-3000:]
        assert job.credits_charged == 15
        assert job.images.count() == 3
        assert balance(user) == {"balance": 35, "held": 0, "available": 35}
    finally:
        worker.terminate()
        worker.wait(timeout=20)
