"""Random sequences of ledger operations against a model (ledger_machine.py), checked after every
step. CI runs a modest, derandomized number of sequences on each database;
bench/bench_ledger_model.py runs thousands, each replayable from its seed."""

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from creditgate.credits import selectors
from creditgate.credits.tests.ledger_machine import LedgerMachine


@pytest.mark.django_db(transaction=True)
def test_random_sequences_of_ledger_operations_keep_every_invariant():
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=40, stateful_step_count=25, derandomize=True, database=None, deadline=None,
        suppress_health_check=[HealthCheck.too_slow]))
    assert selectors.ledger_check() == []
