"""Holds on PostgreSQL take a one-statement path, elsewhere a step-by-step one (see services).
These tests pin what both must agree on, row by row, and run on whichever database the run uses;
the `transaction=True` ones run outside any test transaction, as web and worker processes do."""

import datetime as dt

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.utils import timezone

from creditgate.core.errors import IdempotencyConflict, InsufficientCredits
from creditgate.credits import selectors, services
from creditgate.credits.models import Hold, LedgerEntry

from .conftest import make_user, snapshot

ENTRY_FIELDS = ["kind", "amount", "available_delta", "held_delta", "available_after", "held_after", "hold",
                "actor", "reason", "reference", "rate", "account"]


def entries(hold):
    return [model_to_dict(e, fields=ENTRY_FIELDS) for e in LedgerEntry.objects.filter(hold=hold).order_by("id")]


@pytest.mark.django_db
def test_the_returned_hold_is_the_stored_row_and_the_account_counters_follow():
    account = services.account_for_user(user=make_user(credits=100))
    hold, created = services.hold_place(account=account, amount=30, idempotency_key="k", fingerprint="f",
                                        reference="job:1", rate={"per_unit": 2})
    assert created and not hold._state.adding
    stored = Hold.objects.get(pk=hold.pk)
    assert model_to_dict(hold) == model_to_dict(stored)
    assert (hold.created_at, hold.expires_at, hold.settled_at) == (stored.created_at, stored.expires_at, None)
    assert (account.available, account.held) == (70, 30)


@pytest.mark.django_db
def test_every_entry_of_a_partial_capture_records_the_same_fields():
    account = services.account_for_user(user=make_user(credits=100))
    hold, _ = services.hold_place(account=account, amount=40, idempotency_key="k", fingerprint="f",
                                  reference="job:7", rate={"reserved": 1})
    before = timezone.now()
    assert services.hold_capture(hold_id=hold.pk, amount=15, rate={"delivered": 3})
    common = {"hold": hold.pk, "actor": None, "reference": "job:7", "account": account.pk}
    assert entries(hold) == [
        {**common, "kind": "hold", "amount": 0, "available_delta": -40, "held_delta": 40, "available_after": 60,
         "held_after": 40, "reason": "", "rate": {"reserved": 1}},
        {**common, "kind": "capture", "amount": -15, "available_delta": 0, "held_delta": -15,
         "available_after": 60, "held_after": 25, "reason": "", "rate": {"delivered": 3}},
        {**common, "kind": "release", "amount": 0, "available_delta": 25, "held_delta": -25,
         "available_after": 85, "held_after": 0, "reason": "", "rate": {"reserved": 1}},
    ]
    hold.refresh_from_db()
    assert hold.settled_at is not None and hold.settled_at >= before
    assert all(e.created_at >= hold.created_at for e in LedgerEntry.objects.filter(hold=hold))


@pytest.mark.django_db
def test_a_capture_without_a_rate_records_the_rate_the_hold_reserved_at():
    account = services.account_for_user(user=make_user(credits=100))
    hold, _ = services.hold_place(account=account, amount=10, idempotency_key="k", fingerprint="f",
                                  rate={"reserved": 1})
    assert services.hold_capture(hold_id=hold.pk, amount=10)
    assert [(e["kind"], e["rate"]) for e in entries(hold)] == [("hold", {"reserved": 1}),
                                                               ("capture", {"reserved": 1})]


@pytest.mark.django_db
def test_an_expiry_records_its_reason_and_kind_and_a_release_without_rate_stores_null():
    account = services.account_for_user(user=make_user(credits=100))
    hold, _ = services.hold_place(account=account, amount=10, idempotency_key="k", fingerprint="f")
    assert services.holds_release_stale(now=timezone.now() + dt.timedelta(days=1)) == 1
    expiry = entries(hold)[-1]
    assert (expiry["kind"], expiry["reason"], expiry["rate"], expiry["available_after"]) == (
        "expire", "the hold expired", None, 100)
    assert LedgerEntry.objects.filter(hold=hold, rate__isnull=True).count() == 2  # SQL NULL, not JSON null


@pytest.mark.django_db
def test_a_replay_after_the_account_ran_short_returns_the_first_hold_and_charges_nothing():
    account = services.account_for_user(user=make_user(credits=10))
    first, _ = services.hold_place(account=account, amount=10, idempotency_key="k", fingerprint="f")
    before = snapshot(account)
    again, created = services.hold_place(account=account, amount=10, idempotency_key="k", fingerprint="f")
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(IdempotencyConflict):
        services.hold_place(account=account, amount=10, idempotency_key="k", fingerprint="other")
    assert snapshot(account) == before


@pytest.mark.django_db(transaction=True)
def test_outside_any_transaction_each_operation_commits_on_its_own():
    account = services.account_for_user(user=make_user(credits=20))
    hold, created = services.hold_place(account=account, amount=15, idempotency_key="k", fingerprint="f")
    assert created and not connection.in_atomic_block
    assert services.hold_place(account=account, amount=15, idempotency_key="k", fingerprint="f")[0].pk == hold.pk
    before = snapshot(account)
    with pytest.raises(InsufficientCredits) as exc:
        services.hold_place(account=account, amount=6, idempotency_key="k2", fingerprint="f")
    assert exc.value.details == {"required": 6, "available": 5}
    assert snapshot(account) == before and Hold.objects.count() == 1
    assert services.hold_capture(hold_id=hold.pk, amount=5)
    assert not services.hold_release(hold_id=hold.pk)
    assert selectors.balance_get(account=account) == {"balance": 15, "held": 0, "available": 15}
    assert selectors.ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_settling_inside_a_longer_transaction_is_refused_before_it_changes_anything():
    account = services.account_for_user(user=make_user(credits=20))
    hold, _ = services.hold_place(account=account, amount=15, idempotency_key="k", fingerprint="f")
    with transaction.atomic():
        with pytest.raises(RuntimeError, match="durable"):
            services.hold_capture(hold_id=hold.pk, amount=5)
        with pytest.raises(RuntimeError, match="durable"):
            services.hold_release(hold_id=hold.pk)
    hold.refresh_from_db()
    assert hold.state == "active"
    assert selectors.balance_get(account=account) == {"balance": 20, "held": 15, "available": 5}


@pytest.mark.django_db(transaction=True)
def test_a_replayed_key_inside_the_callers_transaction_leaves_it_usable():
    account = services.account_for_user(user=make_user(credits=20))
    first, _ = services.hold_place(account=account, amount=5, idempotency_key="k", fingerprint="f")
    with transaction.atomic():
        again, created = services.hold_place(account=account, amount=5, idempotency_key="k", fingerprint="f")
        _second, _ = services.hold_place(account=account, amount=5, idempotency_key="k2", fingerprint="f")
        with pytest.raises(InsufficientCredits):
            services.hold_place(account=account, amount=50, idempotency_key="k3", fingerprint="f")
        assert Hold.objects.count() == 2  # the caller's transaction still answers queries
    assert (again.pk, created) == (first.pk, False)
    assert selectors.balance_get(account=account) == {"balance": 20, "held": 10, "available": 10}
    assert selectors.ledger_check() == []
