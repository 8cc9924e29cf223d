"""Inline runs: a generation POST with `Prefer: wait` runs its job in the web process that accepted
it (hold → call → settle, no queue hop), on the real server as the Procfile runs it (gunicorn with a
uvicorn worker, creditgate.asgi) on PostgreSQL + Redis with the Celery backend.

- With no Celery worker at all, a waiting caller still gets its finished job: nothing went
  through the queue.
- The web process killed while the provider call is out: the job's lease lapses, the sweep takes
  it over, a worker resumes it and fetches the answer the dead process never read (Runware looks
  tasks up by id): charged once, for what was delivered, and the audit is clean.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from rest_framework.authtoken.models import Token

from creditgate.core import reconciliation
from creditgate.core.tests import polling
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance, make_user
from creditgate.generation.tests.test_crash_points import CeleryWorker, celery_env, wait_final  # noqa: F401
from creditgate.generation.tests.web_server import Web

pytestmark = [pytest.mark.postgres, pytest.mark.celery]


@pytest.fixture
def web(celery_env, gen_env, tmp_path):  # noqa: F811
    servers: list[Web] = []

    def start() -> Web:
        servers.append(Web(gen_env, tmp_path, backend="celery"))
        return servers[-1]

    yield start
    for server in servers:
        server.kill()


def test_a_waiting_caller_gets_its_job_run_in_the_web_process_without_any_worker(web, gen_env):
    server = web()  # and no Celery worker: a job that went through the queue would never run
    user = make_user(credits=50)
    auth = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    response = requests.post(f"{server.url}/api/v1/images/generations/", json={"prompt": "foxes", "tier": "basic",
                                                                                "count": 2},
                             headers={**auth, "Prefer": "wait=20"}, timeout=60)
    assert response.status_code == 200, server.output()
    body = response.json()
    assert (body["status"], body["credits_charged"], len(body["images"])) == ("succeeded", 2, 2)
    assert response.headers["Preference-Applied"] == "wait=20"
    assert balance(user)["available"] == 48
    # Without Prefer: wait, the job goes to the queue, where no worker takes it.
    queued = requests.post(f"{server.url}/api/v1/images/generations/", json={"prompt": "owls", "tier": "basic",
                                                                              "count": 1}, headers=auth, timeout=30)
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    assert reconciliation.reconciliation_audit() == []


def test_the_web_process_killed_mid_call_leaves_its_inline_job_to_the_sweep_and_a_worker(web, gen_env, celery_env,  # noqa: F811
                                                                                        tmp_path):
    gen_env.configure(latency_ms=4000)  # the provider call is out long enough to kill the process under it
    server = web()
    user = make_user(credits=20)
    auth = {"Authorization": f"Token {Token.objects.create(user=user).key}"}
    with ThreadPoolExecutor(1) as pool:
        post = pool.submit(requests.post, f"{server.url}/api/v1/images/generations/",
                           json={"prompt": "foxes", "tier": "basic", "count": 2},
                           headers={**auth, "Prefer": "wait=30"}, timeout=60)
        polling.wait_for(lambda: gen_env.stats.get("runware.imageInference", 0) >= 1, timeout=30,
                         what="the inline run's provider call")
        server.kill()
        with pytest.raises(requests.ConnectionError):
            post.result()
    job = Job.objects.get(user=user)
    assert job.status == "running" and job.attempts == 1  # claimed by the dead process, its call out

    celery_env.append(CeleryWorker(gen_env, tmp_path / "worker.log"))
    job = wait_final(job, sweep=True, timeout=60)
    assert (job.status, job.credits_charged, job.images.count(), job.attempts) == ("succeeded", 2, 2, 2)
    assert balance(user) == {"balance": 18, "held": 0, "available": 18}
    # The answer the dead process never read was fetched by its task id, not generated again.
    assert gen_env.stats["runware.imageInference"] == 1
    assert gen_env.stats.get("runware.getResponse", 0) >= 1
    assert reconciliation.reconciliation_audit() == []
