"""Refunds and disputes take back the refunded share of a pack's credits: once per amount, in
whatever order the events come, never a negative counter; what was already spent is owed, blocks
new work with a 402 until a purchase pays it, and the audits stay clean throughout."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from creditgate.billing import selectors
from creditgate.billing.models import EventOutcome, Payment, StripeEvent
from creditgate.core import reconciliation
from creditgate.credits import services as credits_services
from creditgate.credits.models import LedgerEntry

from .conftest import account_of, books, buy, client_for, deliver, make_user

pytestmark = pytest.mark.django_db


def clean() -> None:
    assert reconciliation.reconciliation_audit() == []
    call_command("check_ledger", stdout=io.StringIO())  # exits 1 on any problem


def paid(stripe, pack, user):
    _, event = buy(client_for(user), stripe, pack)
    assert deliver(event, stripe).json()["outcome"] == "fulfilled"
    return event["data"]["object"]["payment_intent"]


def spend(user, amount: int, key: str) -> None:
    account = account_of(user)
    hold, _ = credits_services.hold_place(account=account, amount=amount, idempotency_key=key, fingerprint="f")
    credits_services.hold_capture(hold_id=hold.pk, amount=amount)


def refund(stripe, intent: str, amount: int):
    stripe.refund(intent, amount)
    (event,) = stripe.take_held()
    return deliver(event, stripe)


def test_a_full_refund_before_spending_takes_every_credit_back(stripe, pack):
    user = make_user()
    intent = paid(stripe, pack, user)
    response = refund(stripe, intent, 1200)
    assert response.json()["outcome"] == "reversed"
    account = account_of(user)
    assert (account.available, account.shortfall) == (0, 0)
    entry = LedgerEntry.objects.get(kind="clawback")
    assert (entry.amount, entry.shortfall_delta) == (-250, 0)
    assert entry.reason.startswith("Refund of charge ch_test_")
    clean()


def test_partial_refunds_take_back_their_share_rounded_down_and_a_repeat_takes_nothing(stripe, pack):
    user = make_user()
    intent = paid(stripe, pack, user)  # 250 credits for 12.00
    assert refund(stripe, intent, 500).json()["outcome"] == "reversed"    # 5.00 of 12.00: 104.17 -> 104
    assert account_of(user).available == 146
    stripe.refund(intent, 100)                                           # 6.00 in all: 125
    (event,) = stripe.take_held()
    assert deliver(event, stripe).json()["outcome"] == "reversed"
    assert deliver(event, stripe).json()["duplicate"] is True
    assert account_of(user).available == 125
    payment = Payment.objects.get()
    assert (payment.amount_refunded, payment.credits_reversed) == (600, 125)
    clean()


def test_refund_after_spending_records_a_shortfall_and_blocks_new_work_until_a_purchase(stripe, pack):
    user = make_user()
    client = client_for(user)
    intent = paid(stripe, pack, user)
    spend(user, 200, "job-1")  # 50 left
    before_entries = LedgerEntry.objects.count()
    assert refund(stripe, intent, 1200).json()["outcome"] == "reversed"
    account = account_of(user)
    assert (account.available, account.held, account.shortfall) == (0, 0, 200)  # never negative
    assert LedgerEntry.objects.count() == before_entries + 1
    record = StripeEvent.objects.get(type="charge.refunded")
    assert record.message == "Took back 250 credits (200 of them already spent: owed)."
    assert client.get("/api/v1/credits/shortfall/").json() == {"shortfall": 200}
    clean()

    # New work is refused with a clear 402 and writes nothing.
    before = books(user)
    response = client.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 1},
                           format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "shortfall_owed" and error["details"]["shortfall"] == 200
    assert "Buy credits" in error["message"]
    assert books(user) == before

    # A purchase pays the shortfall first; what is left is spendable.
    paid(stripe, pack, user)
    account = account_of(user)
    assert (account.available, account.shortfall) == (50, 0)
    kinds = list(LedgerEntry.objects.filter(account=account).order_by("-id").values_list("kind", "amount")[:2])
    assert kinds == [("shortfall", -200), ("grant", 250)]
    assert client.get("/api/v1/credits/shortfall/").json() == {"shortfall": 0}
    spend(user, 50, "job-2")
    clean()


def test_a_dispute_takes_back_the_disputed_share_on_top_of_a_refund(stripe, pack):
    user = make_user()
    intent = paid(stripe, pack, user)
    refund(stripe, intent, 600)  # half: 125
    stripe.dispute(intent, 600)  # the other half
    (event,) = stripe.take_held()
    assert deliver(event, stripe).json()["outcome"] == "reversed"
    payment = Payment.objects.get()
    assert (payment.amount_refunded, payment.amount_disputed, payment.credits_reversed) == (600, 600, 250)
    assert account_of(user).available == 0
    clean()


def test_a_refund_delivered_before_its_payment_waits_then_applies_with_it(stripe, pack):
    user = make_user()
    _, completed = buy(client_for(user), stripe, pack)
    intent = completed["data"]["object"]["payment_intent"]
    stripe.refund(intent, 1200)
    (refunded,) = stripe.take_held()
    before = books(user)
    assert deliver(refunded, stripe).json()["outcome"] == "pending"  # out of order: no payment yet
    assert books(user) == before
    assert deliver(completed, stripe).json()["outcome"] == "fulfilled"
    assert StripeEvent.objects.get(type="charge.refunded").outcome == EventOutcome.REVERSED
    account = account_of(user)
    assert (account.available, account.shortfall) == (0, 0)
    assert list(LedgerEntry.objects.filter(account=account).order_by("id").values_list("kind", "amount")) == [
        ("grant", 250), ("clawback", -250)]
    clean()


def test_a_refund_of_a_payment_that_is_not_ours_stays_visible_and_changes_nothing(stripe):
    user = make_user(credits=10)
    event = {"id": "evt_foreign", "object": "event", "type": "charge.refunded", "created": 1,
             "data": {"object": {"id": "ch_x", "object": "charge", "amount": 100, "amount_refunded": 100,
                                 "currency": "usd", "payment_intent": "pi_elsewhere"}}}
    before = books(user)
    assert deliver(event, stripe).json()["outcome"] == "pending"
    assert books(user) == before
    assert StripeEvent.objects.get().payment_intent == "pi_elsewhere"


def test_the_payments_audit_finds_credits_granted_without_a_payment(stripe, pack):
    user = make_user()
    paid(stripe, pack, user)
    assert selectors.payments_audit() == []
    credits_services.credits_grant(account=account_of(user), amount=99, reference="stripe:cs_test_forged")
    problems = selectors.payments_audit()
    assert problems == ["stripe:cs_test_forged: 99 credits granted for a Stripe session with no payment"]
    assert "stripe:cs_test_forged" in " ".join(reconciliation.reconciliation_audit())


def dispute(stripe, intent: str, amount: int) -> tuple[dict, dict]:
    """A dispute opened on the sandbox: the dispute and its held `charge.dispute.created` event."""
    opened = stripe.dispute(intent, amount)
    (event,) = stripe.take_held()
    return opened, event


def closed(stripe, dispute_id: str, status: str) -> dict:
    stripe.close_dispute(dispute_id, status)
    (event,) = stripe.take_held()
    assert event["type"] == "charge.dispute.closed"
    return event


def test_a_dispute_won_gives_back_what_it_took_once_however_often_it_is_delivered(stripe, pack):
    user = make_user()
    intent = paid(stripe, pack, user)
    opened, created = dispute(stripe, intent, 1200)
    assert deliver(created, stripe).json()["outcome"] == "reversed"
    assert account_of(user).available == 0
    won = closed(stripe, opened["id"], "won")
    for _ in range(3):  # a repeated delivery, and a repeated opening, give and take nothing
        deliver(won, stripe)
        deliver(created, stripe)
    assert StripeEvent.objects.get(type="charge.dispute.closed").outcome == EventOutcome.RESTORED
    account = account_of(user)
    assert (account.available, account.shortfall) == (250, 0)
    payment = Payment.objects.get()
    assert (payment.amount_disputed, payment.credits_reversed, payment.dispute_outcome) == (0, 0, "won")
    entries = list(LedgerEntry.objects.filter(account=account).order_by("id").values_list("kind", "amount"))
    assert entries == [("grant", 250), ("clawback", -250), ("refund", 250)]
    assert (LedgerEntry.objects.get(kind="refund").reason
            == f"Dispute {opened['id']} closed in our favour: credits given back")
    clean()


def test_a_dispute_won_after_the_credits_were_spent_clears_the_shortfall_first(stripe, pack):
    user = make_user()
    client = client_for(user)
    intent = paid(stripe, pack, user)
    spend(user, 200, "job-1")  # 50 left
    opened, created = dispute(stripe, intent, 1200)
    deliver(created, stripe)
    assert (account_of(user).available, account_of(user).shortfall) == (0, 200)
    assert deliver(closed(stripe, opened["id"], "won"), stripe).json()["outcome"] == "restored"
    account = account_of(user)
    assert (account.available, account.shortfall) == (50, 0)  # as if the dispute had never been
    assert client.get("/api/v1/credits/shortfall/").json() == {"shortfall": 0}
    spend(user, 50, "job-2")  # new work is accepted again
    clean()


def test_a_dispute_won_delivered_before_it_was_opened_takes_and_gives_nothing(stripe, pack):
    user = make_user()
    intent = paid(stripe, pack, user)
    opened, created = dispute(stripe, intent, 1200)
    won = closed(stripe, opened["id"], "won")
    before = books(user)
    assert deliver(won, stripe).json()["outcome"] == "no_change"
    assert deliver(created, stripe).json()["outcome"] == "no_change"  # its opening, late: nothing to take
    assert books(user) == before and account_of(user).available == 250
    assert Payment.objects.get().dispute_outcome == "won"
    clean()


def test_a_dispute_won_delivered_before_its_payment_waits_then_applies_with_it(stripe, pack):
    user = make_user()
    _, completed = buy(client_for(user), stripe, pack)
    intent = completed["data"]["object"]["payment_intent"]
    opened, created = dispute(stripe, intent, 600)
    won = closed(stripe, opened["id"], "won")
    assert deliver(won, stripe).json()["outcome"] == "pending"
    assert deliver(created, stripe).json()["outcome"] == "pending"
    assert deliver(completed, stripe).json()["outcome"] == "fulfilled"
    assert account_of(user).available == 250  # granted; the dispute closed in our favour before it opened here
    assert list(LedgerEntry.objects.filter(account=account_of(user)).values_list("kind", flat=True)) == ["grant"]
    clean()


def test_a_dispute_lost_changes_nothing_more(stripe, pack):
    user = make_user()
    intent = paid(stripe, pack, user)
    opened, created = dispute(stripe, intent, 600)
    assert deliver(created, stripe).json()["outcome"] == "reversed"  # half: 125
    before = books(user)
    lost = closed(stripe, opened["id"], "lost")
    assert deliver(lost, stripe).json()["outcome"] == "no_change"
    assert deliver(lost, stripe).json()["duplicate"] is True
    assert books(user) == before and account_of(user).available == 125
    payment = Payment.objects.get()
    assert (payment.amount_disputed, payment.credits_reversed, payment.dispute_outcome) == (600, 125, "lost")
    clean()


def test_a_dispute_lost_delivered_before_it_was_opened_takes_its_share_once(stripe, pack):
    user = make_user()
    intent = paid(stripe, pack, user)
    opened, created = dispute(stripe, intent, 600)
    lost = closed(stripe, opened["id"], "lost")
    assert deliver(lost, stripe).json()["outcome"] == "reversed"
    assert deliver(created, stripe).json()["outcome"] == "no_change"
    assert account_of(user).available == 125
    clean()
