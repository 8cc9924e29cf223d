from functools import partial

import pytest
from rest_framework.test import APIClient

from creditgate.core import runtime
from creditgate.credits.models import LedgerEntry
from creditgate.credits.tests import factories
from creditgate.generation.models import Job


@pytest.fixture
def jobs_inprocess(settings):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    yield
    runtime.wait_idle()


@pytest.fixture
def gen_env(transactional_db, seeded_catalog, sandbox, jobs_inprocess):
    """A seeded catalog served by the sandbox, jobs on the in-process pool, committed rows."""
    return sandbox


START_CREDITS = 500


# The generation tests' users start with credits and a password (some log in).
make_user = partial(factories.make_user, credits=START_CREDITS, password="pw-123456789")


@pytest.fixture
def user():
    return make_user()


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def balance(user) -> dict:
    client = APIClient()
    client.force_authenticate(user)
    return client.get("/api/v1/credits/balance/").json()


def finished(api, response) -> dict:
    """The job of a 202 response once the in-process pool has run it."""
    assert response.status_code == 202, response.content
    runtime.wait_idle()
    return api.get(f"/api/v1/jobs/{response.json()['id']}/").json()


def counts() -> tuple[int, int]:
    """Jobs and ledger rows once the pool is idle: a job accepted earlier in the test must not
    add its capture between two counts that a refused request should leave equal."""
    runtime.wait_idle()
    return Job.objects.count(), LedgerEntry.objects.count()
