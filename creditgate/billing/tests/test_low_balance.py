"""Low-balance emails through Resend (the sandbox's): one email for one crossing below the
owner's threshold, none while below, another after a top-up above it and a new crossing, never
from a transaction that rolled back, and retried when Resend fails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F

from creditgate.billing import services
from creditgate.billing.models import LowBalanceEmail
from creditgate.catalog.models import IntegrationProvider
from creditgate.core import runtime
from creditgate.credits import services as credits_services

from .conftest import account_of, client_for, make_user


@pytest.fixture
def mail(transactional_db, sandbox, settings):
    """Committed rows (the sender runs on a thread with its own connection), tasks in-process,
    Resend answered by the sandbox."""
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    IntegrationProvider.objects.get_or_create(provider_id="resend", defaults={"display_name": "Resend"})
    yield sandbox
    runtime.wait_idle()


def emails(sandbox) -> list[dict]:
    runtime.wait_idle()
    return sandbox.requests("resend.emails")


def charge(user, amount: int, key: str) -> None:
    account = account_of(user)
    hold, _ = credits_services.hold_place(account=account, amount=amount, idempotency_key=key, fingerprint="f")
    credits_services.hold_capture(hold_id=hold.pk, amount=amount)


def armed(user) -> bool:
    return account_of(user).low_balance_armed


def test_the_owner_sets_the_threshold_and_where_it_goes(mail):
    client = client_for(make_user(credits=100))
    assert client.get("/api/v1/credits/low-balance-alert/").json() == {"threshold": None,
                                                                       "email": "alice@example.com", "armed": False}
    response = client.put("/api/v1/credits/low-balance-alert/", {"threshold": 50}, format="json")
    assert response.status_code == 200
    assert response.json() == {"threshold": 50, "email": "alice@example.com", "armed": True}
    response = client.put("/api/v1/credits/low-balance-alert/", {"threshold": 500, "email": "ops@example.com"},
                          format="json")
    assert response.json() == {"threshold": 500, "email": "ops@example.com", "armed": False}  # already below
    assert client.put("/api/v1/credits/low-balance-alert/", {"threshold": None}, format="json").json() == {
        "threshold": None, "email": "alice@example.com", "armed": False}


@pytest.mark.parametrize("body, field", [({"threshold": 0}, "threshold"), ({"threshold": "5"}, "threshold"),
                                         ({"threshold": 5, "email": "not an address"}, "email"), ({}, "threshold")])
def test_a_bad_setting_is_refused_and_changes_nothing(mail, body, field):
    user = make_user(credits=100)
    client = client_for(user)
    client.put("/api/v1/credits/low-balance-alert/", {"threshold": 50}, format="json")
    response = client.put("/api/v1/credits/low-balance-alert/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["details"]
    assert client.get("/api/v1/credits/low-balance-alert/").json()["threshold"] == 50


def test_without_any_email_address_the_setting_is_refused(mail):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="noemail")
    response = client_for(user).put("/api/v1/credits/low-balance-alert/", {"threshold": 10}, format="json")
    assert response.status_code == 400 and "email" in response.json()["error"]["details"]


def test_one_email_per_crossing_none_while_below_another_after_a_top_up(mail):
    user = make_user(credits=100)
    services.low_balance_alert_set(user=user, threshold=50)
    charge(user, 40, "a")                       # 60: above
    assert emails(mail) == []
    charge(user, 20, "b")                       # 40: crossed
    (first,) = emails(mail)
    assert first["to"] == ["alice@example.com"]
    assert first["subject"] == "Your creditgate credits are running low (40 left)"
    assert "has 40 credits available, below the 50" in first["text"]
    assert not armed(user)
    charge(user, 10, "c")                       # 30: still below, no email
    credits_services.credits_grant(account=account_of(user), amount=15)  # 45: a top-up, but not above it
    charge(user, 5, "d")
    assert len(emails(mail)) == 1 and not armed(user)
    credits_services.credits_grant(account=account_of(user), amount=60)  # 100: above again, re-armed
    assert armed(user)
    charge(user, 70, "e")                       # 30: a new crossing
    sent = emails(mail)
    assert len(sent) == 2 and "(30 left)" in sent[1]["subject"]
    assert LowBalanceEmail.objects.filter(sent_at__isnull=False).count() == 2


def test_no_email_from_a_transaction_that_rolled_back(mail):
    user = make_user(credits=100)
    services.low_balance_alert_set(user=user, threshold=50)
    account = account_of(user)
    hold, _ = credits_services.hold_place(account=account, amount=80, idempotency_key="k", fingerprint="f")

    class Crash(Exception):
        pass

    with pytest.raises(Crash), transaction.atomic():
        assert credits_services.hold_settle(hold_id=hold.pk, captured=80)  # crossed, inside this transaction
        raise Crash  # e.g. the job's settlement failed after the capture
    assert emails(mail) == [] and LowBalanceEmail.objects.count() == 0
    assert armed(user) and account_of(user).available == 20  # nothing happened: still held, still armed
    assert credits_services.hold_capture(hold_id=hold.pk, amount=80)
    assert len(emails(mail)) == 1


def test_an_alert_set_while_below_waits_for_a_top_up(mail):
    user = make_user(credits=30)
    services.low_balance_alert_set(user=user, threshold=50)
    charge(user, 10, "a")
    assert emails(mail) == []
    credits_services.credits_grant(account=account_of(user), amount=80)  # 100
    charge(user, 60, "b")
    assert len(emails(mail)) == 1


def test_a_failing_resend_is_retried_and_an_exhausted_email_stays_visible(mail):
    user = make_user(credits=100)
    services.low_balance_alert_set(user=user, threshold=50)
    mail.resend.fail_next = 2
    charge(user, 60, "a")
    (sent,) = emails(mail)
    row = LowBalanceEmail.objects.get()
    assert row.sent_at is not None and row.attempts == 3 and row.message_id == sent["id"]

    credits_services.credits_grant(account=account_of(user), amount=100)
    mail.resend.fail_next = 100
    charge(user, 100, "b")
    assert len(emails(mail)) == 1
    row = LowBalanceEmail.objects.latest("id")
    assert row.sent_at is None and row.attempts == 7 and "Resend did not accept" in row.last_error
    mail.resend.fail_next = 0
    assert services.low_balance_email_send(email_id=row.pk) is True
    assert len(emails(mail)) == 2
    assert services.low_balance_email_send(email_id=row.pk) is False  # sent once


def test_the_capture_of_a_real_job_sends_it(mail, seeded_catalog, settings):
    settings.CREDITGATE_JOB_SWEEP_SECONDS = 0
    user = make_user(credits=20)
    services.low_balance_alert_set(user=user, threshold=20)  # armed: 20 available; any charge crosses it
    client = client_for(user)
    response = client.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "quality", "count": 1},
                           format="json", HTTP_IDEMPOTENCY_KEY="job-1")
    assert response.status_code == 202, response.content
    runtime.wait_idle()
    job = client.get(f"/api/v1/jobs/{response.json()['id']}/").json()
    assert job["status"] == "succeeded"
    (sent,) = emails(mail)
    assert f"({20 - job['credits_charged']} left)" in sent["subject"]


def age(minutes: int) -> None:
    """As if `minutes` had passed since every low-balance email was written and last tried."""
    LowBalanceEmail.objects.update(created_at=F("created_at") - timedelta(minutes=minutes),
                                   last_attempt_at=F("last_attempt_at") - timedelta(minutes=minutes))


def retried() -> int:
    handed = services.low_balance_emails_retry()
    runtime.wait_idle()
    return handed


@pytest.fixture
def resend_down(mail, settings):
    """A crossing whose email Resend refused through all of its task's retries (7 tries)."""
    settings.CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS = 600
    settings.CREDITGATE_LOW_BALANCE_EMAIL_MAX_ATTEMPTS = 9
    user = make_user(credits=100)
    services.low_balance_alert_set(user=user, threshold=50)
    mail.resend.fail_next = 100
    charge(user, 60, "a")
    assert emails(mail) == [] and LowBalanceEmail.objects.get().attempts == 7
    return user


def test_an_email_resend_refused_is_tried_again_periodically_a_bounded_number_of_times(mail, resend_down):
    assert retried() == 0  # just tried: it waits CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS
    age(11)
    assert retried() == 1 and retried() == 0  # one more try per turn, however often the task runs
    assert LowBalanceEmail.objects.get().attempts == 8
    age(11)
    assert retried() == 1
    row = LowBalanceEmail.objects.get()
    assert (row.attempts, row.sent_at) == (9, None) and "Resend did not accept" in row.last_error
    mail.resend.fail_next = 0
    age(60)
    assert retried() == 0  # the ninth try was the last: it stays in the admin's list, unsent
    assert emails(mail) == []


def test_an_email_sent_on_a_later_try_goes_out_once(mail, resend_down):
    mail.resend.fail_next = 0  # Resend is back
    age(11)
    assert retried() == 1
    (sent,) = emails(mail)
    assert "(40 left)" in sent["subject"]
    row = LowBalanceEmail.objects.get()
    assert row.sent_at is not None and row.attempts == 8 and row.message_id == sent["id"]
    age(60)
    assert retried() == 0
    # Even handed over again by hand (the admin's action), a sent email is not sent twice.
    runtime.send(services.RETRY_LOW_BALANCE_EMAIL, row.pk, inline_retries=True)
    assert len(emails(mail)) == 1


def test_an_email_no_longer_true_is_not_tried_again(mail, resend_down):
    user = resend_down
    mail.resend.fail_next = 0
    credits_services.credits_grant(account=account_of(user), amount=100)  # 140: above the threshold again
    age(11)
    assert retried() == 0 and emails(mail) == []  # "running low" would be wrong now

    charge(user, 100, "b")  # 40: a new crossing, with its own email (sent: Resend is back)
    assert len(emails(mail)) == 1
    age(11)
    assert retried() == 0  # the first crossing's email is superseded by the second's
    assert len(emails(mail)) == 1 and LowBalanceEmail.objects.filter(sent_at__isnull=True).count() == 1


def test_the_in_process_sweeper_and_celery_beat_run_the_retry(mail, resend_down, settings):
    assert settings.CELERY_BEAT_SCHEDULE["retry-low-balance-emails"]["task"] == \
        services.RETRY_LOW_BALANCE_EMAILS
    mail.resend.fail_next = 0
    age(11)
    runtime._sweeps_last_run.pop(services.RETRY_LOW_BALANCE_EMAILS, None)
    assert services.RETRY_LOW_BALANCE_EMAILS in runtime.sweep_round()
    assert len(emails(mail)) == 1
    assert services.RETRY_LOW_BALANCE_EMAILS not in runtime.sweep_round()  # at beat's pace
