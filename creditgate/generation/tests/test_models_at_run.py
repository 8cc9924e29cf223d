"""A job uses its tier's models as they are when it runs (issue 22): a model deactivated while the
job waited in the queue is never called; with none left the job fails uncharged with
`tier_unavailable`; with a backup left, the backup serves it at the tier's price."""

from __future__ import annotations

import pytest

from creditgate.catalog.models import AIModelConfig, IntegrationProvider
from creditgate.core import reconciliation, runtime
from creditgate.generation import intake, services
from creditgate.generation.models import Job, ProviderCall
from creditgate.generation.tests.conftest import balance, make_user
from creditgate.generation.tests.test_crash_points import CeleryWorker, celery_env, wait_final  # noqa: F401

OPENAI_IMAGES = "openai.images.generations"
RUNWARE_IMAGES = "runware.imageInference"


def deactivate(model_name: str, *, how: str = "admin") -> None:
    """"admin": as the admin does it (a save: the catalog's version moves, this process's caches
    are dropped at once). "elsewhere": a change this process's routing memo has not seen yet, as
    a worker sees another process's change for up to 2 s (and one made by SQL for up to 300 s)."""
    if how == "elsewhere":
        assert AIModelConfig.objects.filter(model_name=model_name).update(is_active=False) == 1
        return
    model = AIModelConfig.objects.get(model_name=model_name)
    model.is_active = False
    model.save()


def queued_job(monkeypatch, user, tier: str, count: int) -> Job:
    """A job accepted (held) and waiting in the queue: nothing has run it yet."""
    with monkeypatch.context() as patch:
        patch.setattr(runtime, "enqueue", lambda job_id: True)  # handed over, not yet picked up
        job, created = intake.job_create_images(user=user, prompt="a red fox", tier=tier, count=count)
    assert created and job.status == "queued"
    return job


@pytest.mark.usefixtures("gen_env")
class TestInProcess:
    @pytest.mark.parametrize("how", ["admin", "elsewhere"])
    def test_a_queued_job_whose_tiers_only_model_went_inactive_fails_uncharged_and_calls_nothing(
            self, sandbox, monkeypatch, how):
        user = make_user(credits=100)
        job = queued_job(monkeypatch, user, "premium", 2)
        assert balance(user) == {"balance": 100, "held": 30, "available": 70}
        deactivate("google:4@2", how=how)  # premium's only model

        services.job_run(job_id=job.pk)  # the worker picks the job up
        job.refresh_from_db()

        assert (job.status, job.error_code, job.credits_charged) == ("failed", "tier_unavailable", 0)
        assert job.error_message == ("The Premium quality is not available any more: no active model serves it. "
                                     "No credits were charged.")
        assert ProviderCall.objects.filter(job=job).count() == 0
        assert sandbox.stats.get(RUNWARE_IMAGES, 0) == 0 and sandbox.stats.get(OPENAI_IMAGES, 0) == 0
        assert balance(user) == {"balance": 100, "held": 0, "available": 100}  # the hold went back
        assert reconciliation.reconciliation_audit() == []

    @pytest.mark.parametrize("how", ["admin", "elsewhere"])
    def test_a_queued_job_whose_first_model_went_inactive_is_served_by_the_backup(self, sandbox, monkeypatch, how):
        user = make_user(credits=100)
        job = queued_job(monkeypatch, user, "quality", 2)
        deactivate("gpt-image-2", how=how)  # quality's first model; google:2@1 is its backup

        services.job_run(job_id=job.pk)
        job.refresh_from_db()

        assert (job.status, job.credits_charged) == ("succeeded", 10)  # the tier's price, whoever served it
        assert set(job.images.values_list("model_name", flat=True)) == {"google:2@1"}
        assert set(ProviderCall.objects.filter(job=job).values_list("model_name", flat=True)) == {"google:2@1"}
        assert sandbox.stats.get(OPENAI_IMAGES, 0) == 0
        assert balance(user)["available"] == 90
        assert reconciliation.reconciliation_audit() == []

    def test_a_text_job_whose_text_models_all_went_out_of_service_fails_uncharged(self, sandbox, monkeypatch):
        user = make_user(credits=100)
        with monkeypatch.context() as patch:
            patch.setattr(runtime, "enqueue", lambda job_id: True)
            job, _ = intake.job_create_text(user=user, prompt="Say hello.", max_tokens=16)
        assert set(AIModelConfig.objects.filter(model_type="text", is_active=True)
                   .values_list("provider_id", flat=True)) == {"openai"}
        provider = IntegrationProvider.objects.get(provider_id="openai")  # the default text model can only
        provider.is_active = False  # be switched off with its provider (or after another is made default)
        provider.save()

        services.job_run(job_id=job.pk)
        job.refresh_from_db()

        assert (job.status, job.error_code, job.credits_charged) == ("failed", "tier_unavailable", 0)
        assert job.error_message == ("Text generation is not available any more: no active model serves it. "
                                     "No credits were charged.")
        assert ProviderCall.objects.count() == 0 and sandbox.stats.get("openai.chat.completions", 0) == 0
        assert balance(user)["available"] == 100

    def test_a_backup_deactivated_while_the_first_model_failed_gets_no_failover(self, sandbox, settings,
                                                                                 monkeypatch):
        """The models are read again before a failover: the backup the admin switched off while the
        first model's call was out is not called."""
        settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
        sandbox.configure(outages={"openai": "server_error"})
        user = make_user(credits=100)
        job = queued_job(monkeypatch, user, "quality", 1)
        record = services.breaker_record

        def first_answer_then_deactivate(provider_id, model_name, healthy):
            record(provider_id, model_name, healthy)
            if model_name == "gpt-image-2":  # its call failed; the failover comes next
                deactivate("google:2@1")

        monkeypatch.setattr(services, "breaker_record", first_answer_then_deactivate)
        services.job_run(job_id=job.pk)
        job.refresh_from_db()

        assert (job.status, job.credits_charged) == ("failed", 0)
        assert list(ProviderCall.objects.filter(job=job).values_list("model_name", flat=True)) == ["gpt-image-2"]
        assert sandbox.stats.get(RUNWARE_IMAGES, 0) == 0
        assert balance(user)["available"] == 100


@pytest.mark.postgres
@pytest.mark.celery
def test_a_celery_worker_never_calls_a_model_deactivated_while_its_job_waited(
        celery_env, transactional_db, seeded_catalog, sandbox, monkeypatch, tmp_path):  # noqa: F811
    """The reproduction, in a Celery worker process whose catalog memo is warm: premium served a
    job, then its only model was switched off while the next premium job waited in the queue;
    then Quality's first model, while a Quality job waited: its backup serves it."""
    worker = CeleryWorker(sandbox, tmp_path / "worker.log")
    celery_env.append(worker)
    user = make_user(credits=100)
    first, _ = intake.job_create_images(user=user, prompt="a red fox", tier="premium", count=1)
    assert wait_final(first, sweep=False).status == "succeeded", worker.output()
    calls_before = sandbox.stats.get(RUNWARE_IMAGES, 0)

    waiting = queued_job(monkeypatch, user, "premium", 1)
    deactivate("google:4@2")
    assert runtime.enqueue(waiting.pk)  # the warm worker picks it up now
    job = wait_final(waiting, sweep=False)

    assert (job.status, job.error_code, job.credits_charged) == ("failed", "tier_unavailable", 0), worker.output()
    assert ProviderCall.objects.filter(job=job).count() == 0
    assert sandbox.stats.get(RUNWARE_IMAGES, 0) == calls_before
    assert balance(user) == {"balance": 85, "held": 0, "available": 85}

    openai_calls = sandbox.stats.get(OPENAI_IMAGES, 0)
    waiting = queued_job(monkeypatch, user, "quality", 2)
    deactivate("gpt-image-2")
    assert runtime.enqueue(waiting.pk)
    job = wait_final(waiting, sweep=False)

    assert (job.status, job.credits_charged) == ("succeeded", 10), worker.output()
    assert set(job.images.values_list("model_name", flat=True)) == {"google:2@1"}
    assert sandbox.stats.get(OPENAI_IMAGES, 0) == openai_calls
    assert balance(user)["available"] == 75
    assert reconciliation.reconciliation_audit() == []
