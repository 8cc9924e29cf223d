"""Without a broker there is no Celery beat: the in-process sweeper rolls up closed days too, at
most once per CREDITGATE_USAGE_ROLLUP_SECONDS and at most 31 days a run, so the embedded default's
report reads rollups like a deployment with beat does."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from creditgate.core import runtime
from creditgate.core.tests.polling import wait_for
from creditgate.reports import selectors, services
from creditgate.reports.models import ClosedPeriod
from creditgate.reports.tasks import ROLL_UP_USAGE
from creditgate.reports.tests.factories import job, owner

pytestmark = pytest.mark.django_db(transaction=True)  # the sweeper's tasks use their own connections


@pytest.fixture
def forty_closed_days():
    """A job a day for 40 days up to the day before yesterday, all final: the first and the last
    closed day (yesterday too, once it ended an hour ago; days without jobs close as well)."""
    who = owner()
    now = dt.datetime.now(dt.UTC)
    today = now.replace(hour=10, minute=0, second=0, microsecond=0)
    for back in range(41, 1, -1):
        job(who, at=today - dt.timedelta(days=back), images=1)
    return (today - dt.timedelta(days=41)).date(), (now - services.CLOSE_GRACE).date() - dt.timedelta(days=1)


@pytest.fixture
def fresh_sweeper_clock():
    runtime._sweeps_last_run.pop(ROLL_UP_USAGE, None)
    yield
    runtime._sweeps_last_run.pop(ROLL_UP_USAGE, None)


def closed_days() -> int:
    return ClosedPeriod.objects.filter(group="day").count()


def test_the_in_process_sweeper_rolls_up_closed_days_at_a_bounded_rate(forty_closed_days, fresh_sweeper_clock,
                                                                        settings):
    first, last = forty_closed_days
    settings.CREDITGATE_USAGE_ROLLUP_SECONDS = 3600

    assert ROLL_UP_USAGE in runtime.sweep_round(now=1000.0)  # a process's first round rolls up at once
    assert closed_days() == 31  # at most 31 days a run
    assert selectors.closed_days_through() == first + dt.timedelta(days=30)

    for now in (1015.0, 1030.0, 4000.0):  # later rounds within the hour leave it alone
        assert ROLL_UP_USAGE not in runtime.sweep_round(now=now)
    assert closed_days() == 31

    assert ROLL_UP_USAGE in runtime.sweep_round(now=4600.0)  # an hour on: the rest
    assert selectors.closed_days_through() == last and closed_days() == (last - first).days + 1

    settings.CREDITGATE_USAGE_ROLLUP_SECONDS = 60  # a changed setting applies at the next round
    assert ROLL_UP_USAGE in runtime.sweep_round(now=4660.0)
    assert closed_days() == (last - first).days + 1  # nothing new closed: nothing rolled up twice


def test_the_sweeper_thread_of_the_embedded_default_runs_it(forty_closed_days, fresh_sweeper_clock, settings,
                                                            monkeypatch):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    # A sweeper an earlier test started ends after its round once the interval is 0: wait for it,
    # so the thread measured here is the one this process's start-up gives.
    settings.CREDITGATE_JOB_SWEEP_SECONDS = 0
    earlier = runtime._sweeper
    if earlier is not None:
        earlier.join(timeout=30)
        assert not earlier.is_alive(), "an earlier sweeper thread is stuck in a round"
    rounds: list[list[str]] = []
    real_round = runtime.sweep_round
    def counted_round(**kwargs) -> list[str]:
        rounds.append(real_round(**kwargs))
        return rounds[-1]

    monkeypatch.setattr(runtime, "sweep_round", counted_round)
    settings.CREDITGATE_JOB_SWEEP_SECONDS = 0.05
    runtime.inprocess_start()
    assert runtime._sweeper is not None and runtime._sweeper is not earlier and runtime._sweeper.is_alive()
    try:
        deadline = time.monotonic() + 30
        while closed_days() < 31 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert closed_days() == 31  # the first round; the next runs wait for CREDITGATE_USAGE_ROLLUP_SECONDS
        rounds_then = len(rounds)
        wait_for(lambda: len(rounds) >= rounds_then + 3, what="three more rounds of the sweeper")
        assert closed_days() == 31
    finally:
        settings.CREDITGATE_JOB_SWEEP_SECONDS = 0  # the thread ends after its current round
        runtime.wait_idle()
