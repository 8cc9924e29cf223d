"""Memory per in-flight job on the in-process runner (issue 24: "state the memory per in-flight job").

    .venv/bin/pytest -p creditgate.conftest bench/bench_inflight_memory.py -q -s

N one-image Runware jobs are handed to the runner; a fake Runware (respx, in this process) holds
every call until all N are waiting on it, and the Python heap (tracemalloc) and the process RSS
are read at that moment against a reading taken just before the hand-over. The figure per job is
the slope between two values of N (fixed costs, such as the first clients and threads, cancel
out). A job here is what a waiting job holds: its coroutine and tasks, its lease, its run state,
its request in the HTTP client. Not a timed test: it prints, and asserts only that jobs finished.
"""

import gc
import os
import threading
import tracemalloc

import pytest

from creditgate.core import runtime
from creditgate.credits.tests import factories
from creditgate.generation import intake
from creditgate.generation.models import Job
from creditgate.generation.tests.test_inflight import SlowRunware


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _in_flight(n: int, settings, monkeypatch) -> tuple[float, float]:
    """(heap bytes, RSS bytes) grown while n jobs wait on the provider at once."""
    import respx

    real_enqueue = runtime.enqueue
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # created first, handed over below
    user = factories.make_user(f"bench{n}", credits=n * 2)
    jobs = [intake.job_create_images(user=user, prompt="a fox", tier="basic", count=1)[0] for _ in range(n)]
    monkeypatch.setattr(runtime, "enqueue", real_enqueue)
    fake = SlowRunware(n)
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{settings.CREDITGATE_SANDBOX_URL}/runware/v1").mock(side_effect=fake)
        gc.collect()
        heap_before, rss_before = tracemalloc.get_traced_memory()[0], _rss_bytes()
        for job in jobs:
            assert runtime.enqueue(job.pk)
        all_in = fake.all_in.wait(timeout=300)
        heap, rss = tracemalloc.get_traced_memory()[0] - heap_before, _rss_bytes() - rss_before
        if not all_in:
            fake.open_the_gate()
        runtime.wait_idle()
    assert all_in and Job.objects.filter(pk__in=[j.pk for j in jobs], status="succeeded").count() == n
    return heap, rss


@pytest.mark.django_db(transaction=True)
def test_memory_per_in_flight_job(seeded_catalog, sandbox, settings, monkeypatch):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    settings.CREDITGATE_GENERATION_RATE = (100000, 60)  # one account starts them all
    small, large = 100, 400
    tracemalloc.start()
    try:
        _in_flight(20, settings, monkeypatch)  # warm: clients, threads, imports
        heap_small, rss_small = _in_flight(small, settings, monkeypatch)
        heap_large, rss_large = _in_flight(large, settings, monkeypatch)
    finally:
        tracemalloc.stop()
    per_job_heap = (heap_large - heap_small) / (large - small)
    per_job_rss = (rss_large - rss_small) / (large - small)
    print(f"\nin flight {small}: heap +{heap_small / 1024:.0f} KiB, RSS +{rss_small / 1024:.0f} KiB;"
          f" {large}: heap +{heap_large / 1024:.0f} KiB, RSS +{rss_large / 1024:.0f} KiB;"
          f" threads {threading.active_count()}")
    print(f"per in-flight job: heap {per_job_heap / 1024:.1f} KiB, RSS {per_job_rss / 1024:.1f} KiB")
