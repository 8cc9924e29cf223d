"""Issue 24: waiting on a provider costs no thread. One process keeps many jobs' provider calls in
flight at once on the in-process runner's event loop, with a handful of threads whatever their
number, and every job is still charged exactly once.

The fake Runware (respx, in this process: no server threads to count) holds every answer until
all the jobs' calls have arrived, so the jobs can only finish if all of them were in flight at
the same time; it answers the moment the last one arrives.
"""

import asyncio
import base64
import io
import json
import threading
import uuid

import httpx
import pytest
import respx
from PIL import Image

from creditgate.core import runtime
from creditgate.credits.tests import factories
from creditgate.generation import intake
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance

pytestmark = pytest.mark.usefixtures("gen_env")

JOBS = 50


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "orange").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


class SlowRunware:
    """Answers each imageInference once `expected` calls are waiting at once."""

    def __init__(self, expected: int):
        self.expected, self.arrived = expected, 0
        self.all_in = threading.Event()
        self.gate: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.threads: set[int] = set()  # the threads the requests were sent from
        self.threads_at_peak = 0
        self.png = _png()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.gate is None:
            self.gate, self.loop = asyncio.Event(), asyncio.get_running_loop()
        self.arrived += 1
        self.threads.add(threading.get_ident())
        if self.arrived == self.expected:
            self.threads_at_peak = threading.active_count()
            self.all_in.set()
            self.gate.set()
        await self.gate.wait()
        (task,) = json.loads(request.content)
        return httpx.Response(200, json={"data": [{
            "taskType": "imageInference", "taskUUID": task["taskUUID"], "imageUUID": str(uuid.uuid4()),
            "imageBase64Data": self.png, "cost": 0.009}]})

    def open_the_gate(self) -> None:
        """If the calls never all arrive, let the ones that did finish (so the test can fail)."""
        if self.loop is not None and self.gate is not None:
            self.loop.call_soon_threadsafe(self.gate.set)


def test_fifty_jobs_wait_on_the_provider_at_once_without_a_thread_each(settings):
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    users = [factories.make_user(f"user{n}", credits=5) for n in range(JOBS)]
    runtime.wait_idle()
    threads_before = threading.active_count()
    fake = SlowRunware(JOBS)

    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{settings.CREDITGATE_SANDBOX_URL}/runware/v1").mock(side_effect=fake)
        jobs = [intake.job_create_images(user=user, prompt="a fox", tier="basic", count=1)[0] for user in users]
        all_in = fake.all_in.wait(timeout=120)  # an event: set by the 50th call to arrive
        if not all_in:
            fake.open_the_gate()
        runtime.wait_idle()

    assert all_in, f"only {fake.arrived} of {JOBS} provider calls were in flight at once"
    # Every call was sent from the runner's one event-loop thread, and the process did not grow a
    # thread per call: the loop, its bounded pool for database steps, the lease keeper.
    assert len(fake.threads) == 1
    assert fake.threads_at_peak - threads_before <= settings.CREDITGATE_INPROCESS_SYNC_THREADS + 3 < JOBS
    finished = Job.objects.filter(pk__in=[j.pk for j in jobs])
    assert sorted((job.status, job.credits_charged, job.images.count()) for job in finished) == [
        ("succeeded", 1, 1)] * JOBS  # each charged exactly once, for its one image
    assert all(balance(user) == {"balance": 4, "held": 0, "available": 4} for user in users)
