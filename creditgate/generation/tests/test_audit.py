"""The reconciliation audit finds each kind of break when one is planted, and says which."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from creditgate.core import reconciliation, runtime
from creditgate.credits import services as credits_services
from creditgate.credits.services import account_for_user
from creditgate.generation import intake, selectors, services
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import make_user

pytestmark = pytest.mark.usefixtures("gen_env")


@pytest.fixture
def user():
    return make_user(credits=100)


def finished_job(user, **kwargs):
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2, **kwargs)
    runtime.wait_idle()
    job.refresh_from_db()
    assert job.status == "succeeded"
    return job


def waiting_job(user, monkeypatch):
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # accepted, never run
    job, _ = intake.job_create_images(user=user, prompt="foxes", tier="basic", count=2)
    return job


def test_clean_after_normal_use(user):
    finished_job(user)
    intake.job_create_text(user=user, prompt="Write about ledgers.", max_tokens=100)
    runtime.wait_idle()
    assert reconciliation.reconciliation_audit() == []
    out = io.StringIO()
    call_command("check_ledger", stdout=out)
    assert "Ledger OK" in out.getvalue()


def test_a_final_job_with_an_active_hold(user, monkeypatch):
    job = waiting_job(user, monkeypatch)
    Job.objects.filter(pk=job.pk).update(status="failed", finished_at=timezone.now())
    assert selectors.jobs_audit(full=False) == [
        f"job {job.pk} is final but its hold {job.hold_id} is still active",
        f"hold {job.hold_id} (2 credits) is active but has no unfinished job",  # the same break, seen from the hold
    ]


def test_an_active_hold_without_an_unfinished_job(user):
    hold, _ = credits_services.hold_place(account=account_for_user(user=user), amount=5, idempotency_key="orphan",
                                          fingerprint="f", expires=False)
    assert selectors.jobs_audit(full=False) == [f"hold {hold.pk} (5 credits) is active but has no unfinished job"]


def test_a_running_job_whose_lapsed_lease_no_sweep_took_over(user, monkeypatch):
    job = waiting_job(user, monkeypatch)
    long_ago = timezone.now() - dt.timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(status="running", lease_token=job.pk, lease_expires_at=long_ago)
    problems = selectors.jobs_audit(full=False)
    assert len(problems) == 1 and problems[0].startswith(f"job {job.pk} is running but its lease lapsed at")


def test_a_job_owed_its_hand_off_for_too_long(user, monkeypatch):
    job = waiting_job(user, monkeypatch)
    Job.objects.filter(pk=job.pk).update(dispatched_at=None, run_after=timezone.now() - dt.timedelta(hours=1))
    problems = selectors.jobs_audit(full=False)
    assert len(problems) == 1 and problems[0].startswith(f"job {job.pk} has been owed its hand-off")


def test_a_job_charged_for_more_than_it_delivered(user):
    job = finished_job(user)
    job.images.filter(index=1).delete()  # an image lost after the charge
    assert selectors.jobs_audit() == [f"job {job.pk}: charged 2 credits but delivered 1 image(s), worth 1"]


def test_a_job_whose_charge_disagrees_with_its_hold(user):
    job = finished_job(user)
    Job.objects.filter(pk=job.pk).update(credits_charged=1)
    problems = selectors.jobs_audit()
    assert f"job {job.pk}: charged 1 credits but its hold captured 2" in problems


def test_check_ledger_exits_1_with_a_readable_report(user):
    job = finished_job(user)
    Job.objects.filter(pk=job.pk).update(credits_charged=1)
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("check_ledger", stdout=out)
    assert exit_.value.code == 1
    assert "Ledger check FAILED: 2 problem(s)." in out.getvalue()
    assert f"job {job.pk}: charged 1 credits but delivered 2 image(s), worth 2" in out.getvalue()


def test_the_sweep_reports_the_quick_audit(user, monkeypatch):
    job = waiting_job(user, monkeypatch)
    Job.objects.filter(pk=job.pk).update(status="failed", finished_at=timezone.now())
    assert services.jobs_sweep().audit_problems == 2
