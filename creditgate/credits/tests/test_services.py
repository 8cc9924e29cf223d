"""Accounts, grants and holds through the services, on whatever database the run uses."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from creditgate.core.errors import IdempotencyConflict, InsufficientCredits, InvalidRequest
from creditgate.credits import selectors, services
from creditgate.credits.models import Account, AccountMember, EntryKind, Hold, LedgerEntry

from .conftest import make_user, snapshot

pytestmark = pytest.mark.django_db


def place(account, amount, key="k1", fingerprint="f1", **kwargs):
    return services.hold_place(account=account, amount=amount, idempotency_key=key, fingerprint=fingerprint,
                               **kwargs)


def test_a_new_user_gets_a_personal_empty_account():
    user = get_user_model().objects.create_user(username="bob")
    account = services.account_for_user(user=user)
    assert account.name == "bob"
    assert selectors.balance_get(account=account) == {"balance": 0, "held": 0, "available": 0}
    assert services.account_for_user(user=user).pk == account.pk


def test_several_members_share_one_account():
    owner, other = make_user("owner", credits=10), make_user("other")
    account = services.account_for_user(user=owner)
    services.account_member_add(account=account, user=other)
    assert services.account_for_user(user=other).pk == account.pk
    assert AccountMember.objects.filter(account=account).count() == 2


def test_a_member_with_credits_of_their_own_keeps_them_and_gets_them_back_on_leaving():
    from creditgate.credits import team

    owner, rich = make_user("owner"), make_user("rich", credits=5)
    own = services.account_for_user(user=rich)
    services.account_member_add(account=services.account_for_user(user=owner), user=rich)
    assert services.account_for_user(user=rich) == services.account_for_user(user=owner)
    own.refresh_from_db()
    assert own.available == 5
    team.member_leave(user=rich)
    assert services.account_for_user(user=rich) == own and own.available == 5


def test_grant_records_actor_reason_and_counters(account):
    admin = make_user("admin")
    entry = services.credits_grant(account=account, amount=25, actor=admin, reason="promo")
    assert (entry.kind, entry.amount, entry.available_after, entry.held_after) == ("grant", 25, 125, 0)
    assert entry.actor == admin and entry.reason == "promo"
    assert selectors.balance_get(account=account)["available"] == 125


@pytest.mark.parametrize("amount", [0, -5, True, 2.0, "5", 10**13])
def test_a_bad_grant_amount_is_refused_and_changes_nothing(account, amount):
    before = snapshot(account)
    with pytest.raises(InvalidRequest) as exc:
        services.credits_grant(account=account, amount=amount)
    assert "amount" in exc.value.details
    assert snapshot(account) == before


def test_a_negative_adjustment_may_not_take_more_than_is_available(account):
    place(account, 60)
    before = snapshot(account)
    with pytest.raises(InvalidRequest):
        services.credits_grant(account=account, amount=-41, kind="adjustment")
    assert snapshot(account) == before
    entry = services.credits_grant(account=account, amount=-40, kind="adjustment", reason="correction")
    assert (entry.amount, entry.available_after, entry.held_after) == (-40, 0, 60)


def test_hold_moves_credits_from_available_to_held(account):
    hold, created = place(account, 30, reference="job:1", rate={"r": 1})
    assert created and hold.state == "active" and hold.reference == "job:1"
    assert selectors.balance_get(account=account) == {"balance": 100, "held": 30, "available": 70}
    entry = LedgerEntry.objects.get(hold=hold)
    assert (entry.kind, entry.amount, entry.available_delta, entry.held_delta) == ("hold", 0, -30, 30)
    assert entry.rate == {"r": 1}
    assert hold.expires_at - hold.created_at == dt.timedelta(seconds=900)


def test_a_short_account_is_refused_with_required_and_available_and_nothing_changes(account):
    before, holds = snapshot(account), Hold.objects.count()
    with pytest.raises(InsufficientCredits) as exc:
        place(account, 101)
    assert exc.value.details == {"required": 101, "available": 100}
    assert snapshot(account) == before and Hold.objects.count() == holds


def test_replaying_a_key_charges_once(account):
    first, created = place(account, 10)
    again, created_again = place(account, 10)
    assert created and not created_again and again.pk == first.pk
    assert selectors.balance_get(account=account)["available"] == 90
    assert LedgerEntry.objects.filter(kind="hold").count() == 1


def test_replaying_a_key_after_a_price_change_returns_the_first_hold(account):
    first, _ = place(account, 10)
    assert place(account, 12)[0].pk == first.pk  # same request body (fingerprint): same hold
    assert selectors.balance_get(account=account)["held"] == 10


def test_the_same_key_with_another_body_is_a_conflict_and_changes_nothing(account):
    place(account, 10)
    before = snapshot(account)
    with pytest.raises(IdempotencyConflict):
        place(account, 10, fingerprint="other")
    assert snapshot(account) == before


def test_keys_are_per_account(account):
    other = services.account_for_user(user=make_user("bob", credits=10))
    place(account, 5)
    hold, created = place(other, 5)
    assert created and hold.account_id == other.pk


def test_partial_capture_charges_that_and_releases_the_rest(account):
    hold, _ = place(account, 40)
    assert services.hold_capture(hold_id=hold.pk, amount=15, rate={"delivered": 3})
    hold.refresh_from_db()
    assert (hold.state, hold.captured_amount) == ("captured", 15) and hold.settled_at
    assert selectors.balance_get(account=account) == {"balance": 85, "held": 0, "available": 85}
    capture, release = LedgerEntry.objects.filter(hold=hold).exclude(kind="hold").order_by("id")
    assert (capture.kind, capture.amount, capture.available_after, capture.held_after) == ("capture", -15, 60, 25)
    assert (release.kind, release.amount, release.available_after, release.held_after) == ("release", 0, 85, 0)
    assert capture.rate == {"delivered": 3}
    assert selectors.ledger_check() == []


def test_full_capture_writes_no_release(account):
    hold, _ = place(account, 40)
    assert services.hold_capture(hold_id=hold.pk, amount=40)
    assert list(LedgerEntry.objects.filter(hold=hold).values_list("kind", flat=True).order_by("id")) == [
        "hold", "capture"]
    assert selectors.balance_get(account=account)["balance"] == 60


def test_capturing_zero_releases_everything(account):
    hold, _ = place(account, 40)
    assert services.hold_capture(hold_id=hold.pk, amount=0)
    hold.refresh_from_db()
    assert hold.state == "released"
    assert selectors.balance_get(account=account) == {"balance": 100, "held": 0, "available": 100}


def test_capturing_more_than_the_hold_is_refused_and_changes_nothing(account):
    hold, _ = place(account, 40)
    before = snapshot(account)
    with pytest.raises(InvalidRequest):
        services.hold_capture(hold_id=hold.pk, amount=41)
    hold.refresh_from_db()
    assert hold.state == "active" and snapshot(account) == before


def test_a_hold_settles_exactly_once(account):
    hold, _ = place(account, 40)
    assert services.hold_release(hold_id=hold.pk, reason="failed")
    before = snapshot(account)
    assert not services.hold_capture(hold_id=hold.pk, amount=10)
    assert not services.hold_release(hold_id=hold.pk)
    assert services.holds_release_stale(now=timezone.now() + dt.timedelta(days=1)) == 0
    assert snapshot(account) == before
    assert LedgerEntry.objects.get(hold=hold, kind="release").reason == "failed"


def test_the_reaper_expires_only_stale_holds(account):
    old, _ = place(account, 10, key="old")
    fresh, _ = place(account, 20, key="fresh")
    Hold.objects.filter(pk=old.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert services.holds_release_stale() == 1
    old.refresh_from_db(), fresh.refresh_from_db()
    assert (old.state, fresh.state) == ("expired", "active")
    assert LedgerEntry.objects.get(hold=old, kind=EntryKind.EXPIRE).available_delta == 10
    assert selectors.balance_get(account=account) == {"balance": 100, "held": 20, "available": 80}
    assert selectors.ledger_check() == []


def test_hold_place_inside_the_callers_transaction(account):
    from django.db import transaction

    with transaction.atomic():
        _hold, _ = place(account, 10)
        with pytest.raises(InsufficientCredits):
            place(account, 1000, key="too-much")
        # The refused hold wrote nothing; the caller's work and first hold stand.
    assert Hold.objects.filter(account=account).count() == 1
    assert selectors.balance_get(account=account)["held"] == 10


def test_ledger_check_is_clean_after_normal_use_and_lists_a_corrupted_counter(account):
    hold, _ = place(account, 10)
    services.hold_capture(hold_id=hold.pk, amount=4)
    assert selectors.ledger_check() == []
    Account.objects.filter(pk=account.pk).update(available=1000)
    problems = selectors.ledger_check()
    assert any("available is 1000 but the ledger sums to 96" in p for p in problems)


def test_ledger_check_sees_a_held_counter_without_an_active_hold(account):
    Account.objects.filter(pk=account.pk).update(held=5)
    problems = selectors.ledger_check()
    assert any("active holds total 0" in p for p in problems)


def test_ledger_entries_cannot_be_rewritten_through_the_orm(account):
    entry = LedgerEntry.objects.filter(account=account).first()
    assert entry is not None
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()


def test_the_ledgers_statements_name_the_models_tables():
    """The ledger's SQL constants write the tables' names out; they must be the models' tables."""
    from creditgate.credits import models as credit_models
    from creditgate.credits import services as ledger
    from creditgate.generation import services as generation_services
    from creditgate.generation.models import Job

    statements = " ".join(v if isinstance(v, str) else " ".join(v) for k, v in vars(ledger).items()
                          if k.endswith("_SQL"))
    named = {word for word in statements.replace("(", " ").split() if word.startswith("credits_")}
    tables = {m._meta.db_table for m in vars(credit_models).values()
              if isinstance(m, type) and hasattr(m, "_meta") and not m._meta.abstract}
    assert named and named <= tables
    assert f"UPDATE {Job._meta.db_table} " in generation_services._JOB_CLAIM_SQL
