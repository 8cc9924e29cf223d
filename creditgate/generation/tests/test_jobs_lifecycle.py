"""Durable jobs in one process: leases, recovery, resumption, the outbox, the queue timeout.

A run is stopped dead at a named step by raising a BaseException from the `job_step` signal:
nothing after that point runs (no settlement, no cleanup of the job), as when a worker is killed.
The same points with real killed processes are in test_crash_points.py.
"""

import datetime as dt
import logging
import threading
import uuid

import pytest
from django.core.management import call_command
from django.utils import timezone

from creditgate.catalog.models import AIModelConfig
from creditgate.core import reconciliation, runtime
from creditgate.core.tests.polling import wait_for
from creditgate.generation import intake, leases, services
from creditgate.generation.models import CallStatus, Job, ProviderCall
from creditgate.generation.signals import job_step
from creditgate.generation.tests.conftest import balance, make_user

pytestmark = pytest.mark.usefixtures("gen_env")


class Crash(BaseException):
    """A worker dying at a step: not an Exception, so no handler of the service catches it."""


@pytest.fixture
def crash_at():
    armed: dict = {}

    def receiver(sender, job, step, **kwargs):
        if armed.get("step") == step and armed.get("times", 0) > 0:
            armed["times"] -= 1
            raise Crash(step)

    job_step.connect(receiver, dispatch_uid="test-crash-at")

    def arm(step: str, times: int = 1) -> None:
        armed.update(step=step, times=times)

    yield arm
    job_step.disconnect(dispatch_uid="test-crash-at")


class Workers:
    """Whether handed-over jobs run: while down, a job is accepted and handed over but nothing runs
    it (every worker gone), so a test can run it by hand first."""

    def __init__(self, monkeypatch):
        self.monkeypatch, self.real = monkeypatch, runtime.enqueue
        self.down()

    def down(self) -> None:
        self.monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)

    def up(self) -> None:
        self.monkeypatch.setattr(runtime, "enqueue", self.real)


@pytest.fixture
def workers(monkeypatch):
    return Workers(monkeypatch)


@pytest.fixture(autouse=True)
def _quick_retries(settings):
    settings.CREDITGATE_JOB_RETRY_DELAY_SECONDS = 0


def run_until_crash(job) -> None:
    with pytest.raises(Crash):
        services.job_run(job_id=job.pk)


def lapse(job) -> None:
    """The dead worker's lease runs out."""
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))


def recover(workers: Workers) -> services.Swept:
    """The sweep with the workers back: lapsed jobs are queued again and run."""
    workers.up()
    swept = services.jobs_sweep()
    runtime.wait_idle()
    return swept


def images_per_call(model_name: str, n: int) -> None:
    AIModelConfig.objects.filter(model_name=model_name).update(max_images_per_call=n)


def audit_clean() -> None:
    assert reconciliation.reconciliation_audit() == []


# --- A worker that dies is recovered; the user pays once, for what was delivered -----------------


def test_a_run_that_died_waiting_for_runware_fetches_the_answer_instead_of_paying_twice(sandbox, crash_at,
                                                                                         workers):
    user = make_user(credits=20)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    crash_at("answered")
    run_until_crash(job)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("running", 1)
    assert balance(user) == {"balance": 20, "held": 2, "available": 18}  # nothing lost, nothing charged yet
    assert ProviderCall.objects.get(job=job).status == CallStatus.SENT  # its task id was recorded before it went out

    lapse(job)
    swept = recover(workers)
    assert (swept.requeued, swept.dispatched) == (1, 1)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.credits_charged, job.images.count()) == ("succeeded", 2, 2, 2)
    assert sandbox.stats.get("runware.imageInference") == 1  # generated once ...
    assert sandbox.stats.get("runware.getResponse") == 1     # ... and fetched by the second run
    assert balance(user) == {"balance": 18, "held": 0, "available": 18}
    audit_clean()


@pytest.mark.parametrize("tier, model, route, price", [
    ("basic", "runware:97@1", "runware.imageInference", 1),
    ("quality", "gpt-image-2", "openai.images.generations", 5),
])
def test_outputs_stored_before_a_crash_are_kept_and_never_asked_for_again(sandbox, crash_at, workers, tier, model,
                                                                           route, price):
    images_per_call(model, 1)  # three images: three calls, each answer stored as it arrives
    user = make_user(credits=100)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier=tier, count=3)
    crash_at("stored")
    run_until_crash(job)
    assert job.images.count() == 1  # the first answer was stored; the run died right after

    lapse(job)
    swept = recover(workers)
    assert (swept.requeued, swept.dispatched) == (1, 1)

    job.refresh_from_db()
    assert (job.status, job.credits_charged, job.images.count()) == ("succeeded", 3 * price, 3)
    assert sorted(job.images.values_list("index", flat=True)) == [0, 1, 2]
    if tier == "basic":  # Runware: the two answers the dead run never stored were fetched, not made again
        assert (sandbox.stats[route], sandbox.stats["runware.getResponse"]) == (3, 2)
    else:  # OpenAI has no lookup: the two lost answers were asked for again, the stored image was not
        assert sandbox.stats[route] == 5
    assert balance(user)["available"] == 100 - 3 * price
    audit_clean()


def test_a_job_with_nothing_delivered_is_settled_after_its_last_attempt(sandbox, crash_at, workers, settings):
    settings.CREDITGATE_JOB_MAX_ATTEMPTS = 2
    user = make_user(credits=50)
    job, _ = intake.job_create_text(user=user, prompt="Write about foxes.", max_tokens=100)
    crash_at("claimed", times=2)
    run_until_crash(job)
    lapse(job)
    assert services.jobs_sweep().requeued == 1
    run_until_crash(job)
    lapse(job)
    swept = services.jobs_sweep()
    assert (swept.requeued, swept.settled) == (0, 1)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.credits_charged) == ("failed", 2, 0)
    assert job.error_code == "job_interrupted"
    assert "No credits were charged" in job.error_message
    assert balance(user)["held"] == 0
    audit_clean()


def test_a_queued_job_no_worker_takes_is_settled_after_the_queue_timeout(workers, settings):
    user = make_user(credits=20)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="premium", count=1)
    assert services.jobs_sweep() == services.Swept()  # not late yet: nothing to do
    later = timezone.now() + dt.timedelta(seconds=settings.CREDITGATE_JOB_QUEUE_TIMEOUT_SECONDS + 1)
    assert services.jobs_sweep(now=later).expired == 1

    job.refresh_from_db()
    assert (job.status, job.error_code, job.credits_charged) == ("failed", "job_expired", 0)
    assert balance(user) == {"balance": 20, "held": 0, "available": 20}
    assert services.jobs_sweep(now=later).expired == 0  # once
    services.job_run(job_id=job.pk)  # a late message for it runs nothing
    job.refresh_from_db()
    assert job.status == "failed"
    audit_clean()


# --- Leases: a slow provider is not a dead worker ---------------------------------------------


def test_a_slow_run_keeps_its_lease_and_is_charged_for_what_it_delivered(sandbox, settings):
    """Before leases, the reaper failed a job by age while its provider was still working: the
    images were delivered for free. Now the sweep leaves a job alone while its worker renews."""
    settings.CREDITGATE_JOB_LEASE_SECONDS = 2  # renewed every 0.5 s
    sandbox.configure(latency_ms=5000)
    user = make_user(credits=40)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="premium", count=2)
    first_lease = wait_for(lambda: Job.objects.get(pk=job.pk).lease_expires_at, what="the run's start")
    assert first_lease is not None  # wait_for returns the first truthy value
    sweeps, swept_at = [], []

    def sweep_until_final() -> bool:  # sweeps again and again while the provider works (5 s)
        sweeps.append(services.jobs_sweep())
        swept_at.append(timezone.now())
        return Job.objects.get(pk=job.pk).is_final

    wait_for(sweep_until_final, timeout=60, interval=0.25, what="the job's end")
    runtime.wait_idle()

    assert any(at > first_lease for at in swept_at)  # sweeps ran after the first lease would have lapsed
    assert all(s.requeued == s.settled == 0 for s in sweeps), sweeps
    job.refresh_from_db()
    assert (job.status, job.attempts, job.credits_charged, job.images.count()) == ("succeeded", 1, 30, 2)
    assert balance(user) == {"balance": 10, "held": 0, "available": 10}
    audit_clean()


def test_a_run_that_lost_its_lease_writes_nothing_and_the_job_is_charged_once(sandbox, workers):
    """A worker that comes back after recovery took its job over (a long GC pause, a partition)
    finds its lease gone: it stores nothing and settles nothing; the new run does, once."""
    user = make_user(credits=20)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2)

    def take_over(sender, job, step, **kwargs):
        if step == "answered":
            job_step.disconnect(take_over)
            lapse(job)
            assert services.jobs_sweep().requeued == 1

    job_step.connect(take_over)
    services.job_run(job_id=job.pk)  # the first run: taken over while its provider answered

    job.refresh_from_db()
    assert (job.status, job.images.count()) == ("queued", 0)
    assert balance(user)["held"] == 2
    Job.objects.filter(pk=job.pk).update(dispatched_at=None)
    recover(workers)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.credits_charged, job.images.count()) == ("succeeded", 2, 2, 2)
    assert balance(user) == {"balance": 18, "held": 0, "available": 18}
    audit_clean()


def test_the_lease_keeper_notices_a_lease_taken_over(workers):
    user = make_user(credits=20)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=1)
    lease = leases.Lease(job_id=job.pk, token="00000000-0000-0000-0000-000000000000")
    assert leases.renew([lease]) == [lease]


def test_the_lease_keeper_tells_a_takeover_from_a_run_that_just_finished(sandbox, workers, caplog):
    user = make_user(credits=20)
    taken, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=1)
    finished, _ = intake.job_create_images(user=user, prompt="owls", tier="basic", count=1)
    services.job_run(job_id=finished.pk)
    assert Job.objects.get(pk=finished.pk).status == "succeeded"
    Job.objects.filter(pk=taken.pk).update(status="running", lease_token=uuid.uuid4(), attempts=1,
                                            lease_expires_at=timezone.now() + dt.timedelta(minutes=1))
    keeper = leases._Keeper()
    kept = [keeper.keep(job.pk, uuid.uuid4()) for job in (taken, finished)]

    with caplog.at_level(logging.WARNING, logger="creditgate.generation.leases"):
        keeper.renew_round(kept)

    assert all(lease.lost.is_set() for lease in kept)  # both runs stop writing
    warned = [r.getMessage() for r in caplog.records if "taken over" in r.getMessage()]
    assert warned == [f"job {taken.pk}: its lease was taken over; this run stops"]  # not the finished one
    for lease in kept:
        keeper.release(lease)


def test_two_runs_of_one_job_at_once_run_it_once(sandbox, workers):
    user = make_user(credits=20)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    threads = [threading.Thread(target=services.job_run, kwargs={"job_id": job.pk}) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    job.refresh_from_db()
    assert (job.status, job.attempts, job.credits_charged) == ("succeeded", 1, 2)
    assert sandbox.stats["runware.imageInference"] == 1


# --- The outbox: a job committed with its hold is always run -------------------------------------


def test_a_job_whose_hand_off_failed_is_accepted_and_handed_over_by_the_sweep(api, monkeypatch):
    real_enqueue = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: False)  # the broker is down
    body = {"prompt": "a red fox", "tier": "basic", "count": 2}
    first = api.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == 202
    job = Job.objects.get(pk=first.json()["id"])
    assert (job.status, job.dispatched_at) == ("queued", None)  # owed to the queue

    again = api.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert (again.status_code, again.json()["id"]) == (202, str(job.pk))  # a retry finds the same job

    assert services.jobs_sweep().dispatched == 0  # still down: it stays owed
    monkeypatch.setattr(runtime, "enqueue", real_enqueue)  # the broker is back
    assert services.jobs_sweep().dispatched == 1
    runtime.wait_idle()
    final = api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert (final["status"], final["credits_charged"]) == ("succeeded", 2)
    audit_clean()


# --- The sweep's interfaces ----------------------------------------------------------------------


def job_of_a_lost_worker(crash_at, workers) -> Job:
    """A job whose worker died after claiming it, its lease lapsed; workers are up again."""
    user = make_user(credits=20)
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    crash_at("claimed")
    run_until_crash(job)
    lapse(job)
    workers.up()
    return job


def test_release_stale_holds_command_and_beat_task_run_the_sweep(crash_at, workers, capsys):
    from creditgate.generation.tasks import sweep_jobs

    job = job_of_a_lost_worker(crash_at, workers)

    call_command("release_stale_holds")
    out = capsys.readouterr().out
    assert "Queued again 1 job(s) whose worker was lost" in out
    assert "handed 1 to the queue" in out
    runtime.wait_idle()
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    assert sweep_jobs() == services.Swept().as_dict()


def test_in_process_mode_sweeps_on_its_own(crash_at, workers, settings):
    job = job_of_a_lost_worker(crash_at, workers)

    settings.CREDITGATE_JOB_SWEEP_SECONDS = 0.1
    runtime.inprocess_start()  # what the first request a process serves does
    wait_for(lambda: Job.objects.get(pk=job.pk).is_final, what="the sweeper thread's settling")
    job.refresh_from_db()
    settings.CREDITGATE_JOB_SWEEP_SECONDS = 0
    assert (job.status, job.credits_charged) == ("succeeded", 2)
    assert balance(job.user) == {"balance": 18, "held": 0, "available": 18}


def test_a_request_starts_the_in_process_sweeper(client, settings, monkeypatch):
    started = []
    monkeypatch.setattr(runtime, "_executor", lambda: started.append(True))
    client.get("/api/v1/system/ai-config/")
    assert started
