"""Taking credits back (a refund or dispute of a purchase): never a negative counter, the
shortfall owed recorded on the account and in the ledger, no new hold while it is owed, and the
next grant paying it first; the audit checks every step."""

import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from creditgate.core.errors import InsufficientCredits, ShortfallOwed
from creditgate.credits import selectors, services
from creditgate.credits.models import Account, LedgerEntry

from .conftest import make_user, snapshot

pytestmark = pytest.mark.django_db

FIELDS = ["kind", "amount", "available_delta", "held_delta", "shortfall_delta", "available_after", "held_after",
          "reference"]


def counters(account) -> tuple[int, int, int]:
    account.refresh_from_db()
    return account.available, account.held, account.shortfall


def take_back(account, amount, reference="stripe:cs_1"):
    with transaction.atomic():
        return services.credits_take_back(account=account, amount=amount, reason="refund", reference=reference)


def newest(n):
    return [model_to_dict(e, fields=FIELDS) for e in LedgerEntry.objects.order_by("-id")[:n]][::-1]


def test_taking_back_what_is_available_leaves_nothing_owed():
    account = services.account_for_user(user=make_user(credits=100))
    entry = take_back(account, 30)
    assert model_to_dict(entry, fields=FIELDS) == {
        "kind": "clawback", "amount": -30, "available_delta": -30, "held_delta": 0, "shortfall_delta": 0,
        "available_after": 70, "held_after": 0, "reference": "stripe:cs_1"}
    assert counters(account) == (70, 0, 0)
    assert selectors.ledger_check() == []


def test_credits_already_spent_become_a_shortfall_never_a_negative_counter():
    account = services.account_for_user(user=make_user(credits=100))
    hold, _ = services.hold_place(account=account, amount=90, idempotency_key="k", fingerprint="f")
    services.hold_capture(hold_id=hold.pk, amount=80)  # 20 left
    entry = take_back(account, 100)
    assert (entry.amount, entry.shortfall_delta, entry.available_after) == (-20, 80, 0)
    assert counters(account) == (0, 0, 80)
    assert selectors.ledger_check() == []


def test_held_credits_are_left_to_their_running_request():
    account = services.account_for_user(user=make_user(credits=50))
    hold, _ = services.hold_place(account=account, amount=40, idempotency_key="k", fingerprint="f")
    take_back(account, 50)
    assert counters(account) == (0, 40, 40)
    # The job finishes: its capture and release go through; what it returns stays available.
    assert services.hold_capture(hold_id=hold.pk, amount=10)
    assert counters(account) == (30, 0, 40)
    assert selectors.ledger_check() == []


def test_no_hold_is_placed_while_a_shortfall_is_owed_and_nothing_is_written():
    account = services.account_for_user(user=make_user(credits=10))
    hold, _ = services.hold_place(account=account, amount=10, idempotency_key="k", fingerprint="f")
    services.hold_capture(hold_id=hold.pk, amount=10)
    take_back(account, 25)
    services.credits_grant(account=account, amount=5, reason="partial top-up")  # pays 5 of 25
    assert counters(account) == (0, 0, 20)
    before = snapshot(account)
    with pytest.raises(ShortfallOwed) as caught:
        services.hold_place(account=account, amount=1, idempotency_key="k2", fingerprint="f")
    assert (caught.value.status_code, caught.value.code) == (402, "shortfall_owed")
    assert caught.value.details == {"shortfall": 20, "available": 0}
    assert "took back 20 credits" in caught.value.message
    assert snapshot(account) == before


def test_the_shortfall_blocks_even_when_credits_are_available():
    """Credits a running job returns after the take-back stay available, but no new work starts."""
    account = services.account_for_user(user=make_user(credits=30))
    hold, _ = services.hold_place(account=account, amount=30, idempotency_key="k", fingerprint="f")
    take_back(account, 20)
    services.hold_release(hold_id=hold.pk)
    assert counters(account) == (30, 0, 20)
    with pytest.raises(ShortfallOwed):
        services.hold_place(account=account, amount=5, idempotency_key="k2", fingerprint="f")


def test_a_replayed_key_is_answered_before_the_shortfall_refusal():
    account = services.account_for_user(user=make_user(credits=30))
    hold, _ = services.hold_place(account=account, amount=30, idempotency_key="k", fingerprint="f")
    take_back(account, 10)
    again, created = services.hold_place(account=account, amount=30, idempotency_key="k", fingerprint="f")
    assert (again.pk, created) == (hold.pk, False)


def test_a_grant_pays_the_shortfall_first_in_a_second_entry():
    account = services.account_for_user(user=make_user(credits=10))
    hold, _ = services.hold_place(account=account, amount=10, idempotency_key="k", fingerprint="f")
    services.hold_capture(hold_id=hold.pk, amount=10)
    take_back(account, 40)
    assert counters(account) == (0, 0, 40)
    grant = services.credits_grant(account=account, amount=100, reason="bought", reference="stripe:cs_2")
    assert grant.kind == "grant" and grant.amount == 100
    assert newest(2) == [
        {"kind": "grant", "amount": 100, "available_delta": 100, "held_delta": 0, "shortfall_delta": 0,
         "available_after": 100, "held_after": 0, "reference": "stripe:cs_2"},
        {"kind": "shortfall", "amount": -40, "available_delta": -40, "held_delta": 0, "shortfall_delta": -40,
         "available_after": 60, "held_after": 0, "reference": "stripe:cs_2"},
    ]
    assert counters(account) == (60, 0, 0)
    hold, created = services.hold_place(account=account, amount=60, idempotency_key="k3", fingerprint="f")
    assert created
    assert selectors.ledger_check() == []


def test_a_grant_also_uses_credits_that_were_available_to_pay_the_shortfall():
    account = services.account_for_user(user=make_user(credits=30))
    hold, _ = services.hold_place(account=account, amount=30, idempotency_key="k", fingerprint="f")
    take_back(account, 20)
    services.hold_release(hold_id=hold.pk)  # 30 available, 20 owed
    services.credits_grant(account=account, amount=5)
    assert counters(account) == (15, 0, 0)
    assert selectors.ledger_check() == []


def test_a_negative_adjustment_never_touches_the_shortfall():
    account = services.account_for_user(user=make_user(credits=30))
    hold, _ = services.hold_place(account=account, amount=30, idempotency_key="k", fingerprint="f")
    take_back(account, 20)
    services.hold_release(hold_id=hold.pk)
    services.credits_grant(account=account, amount=-10, kind="adjustment", reason="correction")
    assert counters(account) == (20, 0, 20)
    before = snapshot(account)
    with pytest.raises(Exception) as caught:
        services.credits_grant(account=account, amount=-21, kind="adjustment", reason="too much")
    assert "only 20 are available" in str(caught.value)
    assert snapshot(account) == before
    assert selectors.ledger_check() == []


@pytest.mark.django_db(transaction=True)
def test_take_back_and_grant_within_need_the_callers_transaction():
    account = services.account_for_user(user=make_user(credits=10))
    with pytest.raises(RuntimeError):
        services.credits_take_back(account=account, amount=1)
    with pytest.raises(RuntimeError):
        services.credits_grant_within(account=account, amount=1)


def test_the_database_refuses_a_shortfall_entry_that_does_not_add_up():
    account = services.account_for_user(user=make_user(credits=10))
    bad = [
        {"kind": "grant", "amount": 5, "available_delta": 5, "shortfall_delta": 3},           # a grant owes nothing
        {"kind": "clawback", "amount": 5, "available_delta": 5, "shortfall_delta": 0},        # a take-back adds
        {"kind": "shortfall", "amount": -5, "available_delta": -5, "shortfall_delta": -4},    # pays what it spends
    ]
    for fields in bad:
        with pytest.raises(IntegrityError), transaction.atomic():
            LedgerEntry.objects.create(account=account, held_delta=0, available_after=10, held_after=0, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Account.objects.filter(pk=account.pk).update(shortfall=-1)


def test_the_audit_finds_a_shortfall_the_ledger_does_not_explain_and_a_hold_placed_while_owing():
    account = services.account_for_user(user=make_user(credits=10))
    Account.objects.filter(pk=account.pk).update(shortfall=7)
    assert any("shortfall is 7 but the ledger sums to 0" in p for p in selectors.ledger_check())

    other = services.account_for_user(user=make_user("bob", credits=10))
    hold, _ = services.hold_place(account=other, amount=10, idempotency_key="k", fingerprint="f")
    services.hold_capture(hold_id=hold.pk, amount=10)
    take_back(other, 5)
    assert not any(f"account {other.pk}" in p for p in selectors.ledger_check())
    # A hold entry written past the gate (by hand) while 5 credits were owed.
    LedgerEntry.objects.create(account=other, kind="hold", amount=0, available_delta=0, held_delta=0,
                               available_after=0, held_after=0)
    assert any(f"(account {other.pk}, hold): a hold placed while 5 credits were owed" in p
               for p in selectors.ledger_check())


def test_insufficient_credits_is_still_the_answer_without_a_shortfall():
    account = services.account_for_user(user=make_user(credits=3))
    with pytest.raises(InsufficientCredits):
        services.hold_place(account=account, amount=5, idempotency_key="k", fingerprint="f")
