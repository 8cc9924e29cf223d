"""A stateful model of the ledger for Hypothesis: random sequences of grants, refunds, holds
(expiring or not), partial captures, releases, expiry sweeps, replays of idempotency keys (same
request and conflicting ones) and settling a settled hold again, over three accounts, against a
plain Python model of what the balances must be. After every step the invariants are checked
against the database: counters = the model = the ledger's sums, nothing negative, every hold in
the state the model says, placed by exactly one entry and settled by at most one capture and one
release, and the counters of the newest entry equal to the account's.

Used by test_ledger_stateful.py (a modest, derandomized run in CI) and bench/bench_ledger_model.py
(thousands of sequences, each replayable from its seed).
"""

from __future__ import annotations

import datetime as dt
import itertools

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from creditgate.core.errors import IdempotencyConflict, InsufficientCredits
from creditgate.credits import services
from creditgate.credits.models import Account, EntryKind, Hold, HoldState, LedgerEntry

ACCOUNTS = 3
KEYS = ["k1", "k2", "k3", "k4", "k5", "k6"]
_users = itertools.count()


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        User = get_user_model()
        self.accounts = []
        for _ in range(ACCOUNTS):
            user = User.objects.create_user(username=f"ledger-model-{timezone.now().timestamp()}-{next(_users)}")
            self.accounts.append(services.account_for_user(user=user))
        self.available = {a.pk: 0 for a in self.accounts}
        self.held = {a.pk: 0 for a in self.accounts}
        # hold id -> [account id, amount, state, fingerprint, expires]
        self.holds: dict[int, list] = {}
        self.by_key: dict[tuple[int, str], int] = {}

    # Credits in.

    @rule(i=st.integers(0, ACCOUNTS - 1), amount=st.integers(1, 60), refund=st.booleans())
    def grant(self, i, amount, refund):
        account = self.accounts[i]
        services.credits_grant(account=account, amount=amount, kind="refund" if refund else "grant", reason="model")
        self.available[account.pk] += amount

    # Holds.

    @rule(i=st.integers(0, ACCOUNTS - 1), amount=st.integers(1, 80), key=st.sampled_from(KEYS),
          fingerprint=st.sampled_from(["a", "b"]), expires=st.booleans())
    def hold(self, i, amount, key, fingerprint, expires):
        account = self.accounts[i]
        first = self.by_key.get((account.pk, key))
        try:
            hold, created = services.hold_place(account=account, amount=amount, idempotency_key=key,
                                                fingerprint=fingerprint, expires=expires)
        except InsufficientCredits as exc:
            assert first is None, "a replay must never be refused for credits"
            assert self.available[account.pk] < amount
            assert exc.details == {"required": amount, "available": self.available[account.pk]}
            return
        except IdempotencyConflict:
            assert first is not None and self.holds[first][3] != fingerprint
            return
        if first is not None:  # a replay: the first hold, nothing charged again
            assert (created, hold.pk) == (False, first) and self.holds[first][3] == fingerprint
            return
        assert created and self.available[account.pk] >= amount
        self.available[account.pk] -= amount
        self.held[account.pk] += amount
        self.holds[hold.pk] = [account.pk, amount, HoldState.ACTIVE, fingerprint, expires]
        self.by_key[(account.pk, key)] = hold.pk

    def _active(self):
        return sorted(pk for pk, h in self.holds.items() if h[2] == HoldState.ACTIVE)

    def _settle(self, pk: int, captured: int, state: str) -> None:
        account, amount = self.holds[pk][0], self.holds[pk][1]
        self.held[account] -= amount
        self.available[account] += amount - captured
        self.holds[pk][2] = state

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def capture(self, data):
        pk = data.draw(st.sampled_from(self._active()))
        captured = data.draw(st.integers(0, self.holds[pk][1]))
        assert services.hold_capture(hold_id=pk, amount=captured)
        self._settle(pk, captured, HoldState.CAPTURED if captured else HoldState.RELEASED)

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def capture_inside_a_transaction(self, data):
        """As a job settles: in the caller's transaction, with other writes around it."""
        pk = data.draw(st.sampled_from(self._active()))
        captured = data.draw(st.integers(0, self.holds[pk][1]))
        with transaction.atomic():
            assert services.hold_settle(hold_id=pk, captured=captured, reason="job")
        self._settle(pk, captured, HoldState.CAPTURED if captured else HoldState.RELEASED)

    @precondition(lambda self: self._active())
    @rule(data=st.data())
    def release(self, data):
        pk = data.draw(st.sampled_from(self._active()))
        assert services.hold_release(hold_id=pk, reason="model")
        self._settle(pk, 0, HoldState.RELEASED)

    @rule()
    def expiry_sweep(self):
        """Every expiring hold is past its time; holds without expiry (a job's) are untouched."""
        expiring = [pk for pk in self._active() if self.holds[pk][4]]
        Hold.objects.filter(pk__in=expiring).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
        assert services.holds_release_stale() == len(expiring)
        for pk in expiring:
            self._settle(pk, 0, HoldState.EXPIRED)

    @precondition(lambda self: any(h[2] != HoldState.ACTIVE for h in self.holds.values()))
    @rule(data=st.data(), captured=st.integers(0, 5))
    def settle_a_settled_hold_again(self, data, captured):
        pk = data.draw(st.sampled_from(sorted(p for p, h in self.holds.items() if h[2] != HoldState.ACTIVE)))
        assert not services.hold_capture(hold_id=pk, amount=min(captured, self.holds[pk][1]))
        assert not services.hold_release(hold_id=pk)

    # Invariants.

    @invariant()
    def counters_match_the_model_and_the_ledger(self):
        ids = list(self.available)
        stored = {pk: (a, h) for pk, a, h in Account.objects.filter(pk__in=ids)
                      .values_list("pk", "available", "held")}
        sums = {row["account_id"]: (row["a"], row["h"]) for row in LedgerEntry.objects.filter(account_id__in=ids)
                .values("account_id").annotate(a=Sum("available_delta"), h=Sum("held_delta"))}
        for pk in ids:
            model = (self.available[pk], self.held[pk])
            assert model[0] >= 0 and model[1] >= 0
            assert stored[pk] == model, (pk, stored[pk], model)
            assert sums.get(pk, (0, 0)) == model, (pk, sums.get(pk), model)
            last = LedgerEntry.objects.filter(account_id=pk).order_by("-id").values_list(
                "available_after", "held_after").first()
            assert last is None or last == model, (pk, last, model)

    @invariant()
    def holds_match_the_model_and_leave_active_once(self):
        rows = (Hold.objects.filter(pk__in=list(self.holds)).annotate(
            placed=Count("entries", filter=Q(entries__kind=EntryKind.HOLD)),
            captures=Count("entries", filter=Q(entries__kind=EntryKind.CAPTURE)),
            returns=Count("entries", filter=Q(entries__kind__in=[EntryKind.RELEASE, EntryKind.EXPIRE])))
            .values_list("pk", "state", "amount", "captured_amount", "placed", "captures", "returns"))
        for pk, state, amount, captured, placed, captures, returns in rows:
            assert state == self.holds[pk][2] and amount == self.holds[pk][1], (pk, state, self.holds[pk])
            assert placed == 1 and captures <= 1 and returns <= 1
            if state == HoldState.ACTIVE:
                assert captures == returns == 0 and captured == 0
            else:
                assert captures == (1 if captured else 0) and returns == (1 if captured < amount else 0)

    def teardown(self):
        # Leave nothing active behind, so the next sequence's expiry sweep meets only its own holds.
        for pk in self._active():
            services.hold_release(hold_id=pk)
