"""How many SQL statements a paid job costs, so a regression shows (issue: POST <= 6, worker <= 6).

Counted with Django's CaptureQueriesContext (on PostgreSQL, BEGIN, COMMIT and savepoints are
counted too).
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from creditgate.core import runtime
from creditgate.generation import services
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import make_user

pytestmark = pytest.mark.usefixtures("gen_env")


def test_statements_of_a_paid_text_job(monkeypatch):
    user = make_user(credits=100)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.post("/api/v1/text/generations/", {"prompt": "warm up", "max_tokens": 16}, format="json")
    runtime.wait_idle()  # warm: the catalog memo, the adapter
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # run the job below, in this thread

    with CaptureQueriesContext(connection) as post:
        response = client.post("/api/v1/text/generations/", {"prompt": "Say hello.", "max_tokens": 16}, format="json")
    assert response.status_code == 202
    with CaptureQueriesContext(connection) as run:
        services.job_run(job_id=response.json()["id"])
    assert Job.objects.get(pk=response.json()["id"]).status == "succeeded"
    print(f"\nPOST: {len(post)} statements", *[q["sql"][:150] for q in post], sep="\n  ")
    print(f"worker: {len(run)} statements", *[q["sql"][:150] for q in run], sep="\n  ")
    # Teams added one statement to each side: the member's monthly spending row is checked against
    # the cap with the hold (POST) and moved from held to spent with the capture (worker); and the
    # settlement writes the job's webhook deliveries (one INSERT ... SELECT, endpoints or not).
    #
    # Fair shares (issue 24) added one to the POST: under the account row's lock, one SELECT counts
    # the account's (and the API key's) jobs in flight, on a partial index of unfinished jobs.
    #
    # Reached (PostgreSQL and SQLite alike): POST 10, worker 11. The worker reads one thing: the
    # claim returns the job row, the tier's (here the text's) models that can serve now are one
    # SELECT (issue 22: read from the database at the start of every run that was queued, not
    # from the routing memo another process's change reaches only after up to 2 s, so a model
    # switched off while the job waited is never called; an inline run spares it, see the test
    # below), the settlement is BEGIN, the job's final UPDATE, the
    # call's INSERT, the webhook outbox INSERT ... SELECT, the ledger's four (hold, account,
    # member's spending, ledger entry), COMMIT; no savepoint. Going
    # lower needs the ledger's settlement as one statement (credits; a data-modifying CTE, which
    # SQLite cannot run, so not with the ledger's single implementation) and the POST's rate-limit
    # read folded into a write. The POST's hold runs without a savepoint: a concurrent replay's
    # unique-key error rolls back the job's transaction and is recognised after it.
    # Not counted here: the database pool's ping of a connection it hands out (core/postgresql/base.py),
    # which it skips for a connection handed out less than a second before: under load, none.
    assert len(post) <= 10
    assert len(run) <= 11


def test_an_inline_runs_first_start_takes_its_models_from_the_routing_memo(monkeypatch):
    """An inline run (the caller waits, the job never queued) starts on the models its quote was
    priced by a moment before, with no query; any other start reads them from the database."""
    from creditgate.catalog import selectors as catalog_selectors

    user = make_user(credits=100)
    monkeypatch.setattr(runtime, "enqueue", lambda job_id: True)  # queued, not run
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = client.post("/api/v1/text/generations/", {"prompt": "Say hello.", "max_tokens": 16}, format="json")
    job = Job.objects.get(pk=response.json()["id"])
    job.attempts = 1  # as its first claim leaves it
    routing = catalog_selectors.routing_get()

    with CaptureQueriesContext(connection) as queued:
        models = services._models_in_order(job)
    assert len(queued) == 1 and models["text"] == routing.text_models_ordered  # read from the database

    token = services._inline_job.set(str(job.pk))
    try:
        with CaptureQueriesContext(connection) as inline:
            assert services._models_in_order(job)["text"] == routing.text_models_ordered
        assert len(inline) == 0
        job.attempts = 2  # a later run (its first died) reads the database again
        with CaptureQueriesContext(connection) as again:
            services._models_in_order(job)
        assert len(again) == 1
    finally:
        services._inline_job.reset(token)
