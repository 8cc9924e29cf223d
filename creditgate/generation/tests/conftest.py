import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from creditgate.credits import services as credits_services
from creditgate.credits.models import LedgerEntry
from creditgate.generation import dispatch
from creditgate.generation.models import Job


@pytest.fixture
def jobs_inprocess(settings):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    yield
    dispatch.wait_idle()


@pytest.fixture
def gen_env(transactional_db, seeded_catalog, sandbox, jobs_inprocess):
    """A seeded catalog served by the sandbox, jobs on the in-process pool, committed rows."""
    return sandbox


START_CREDITS = 500


def make_user(username="alice", credits=START_CREDITS):
    user = get_user_model().objects.create_user(username=username, password="pw-123456789")
    if credits:
        credits_services.credits_grant(account=credits_services.account_for_user(user=user), amount=credits,
                                       reason="test")
    return user


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
    dispatch.wait_idle()
    return api.get(f"/api/v1/jobs/{response.json()['id']}/").json()


def counts() -> tuple[int, int]:
    """Jobs and ledger rows once the pool is idle: a job accepted earlier in the test must not
    add its capture between two counts that a refused request should leave equal."""
    dispatch.wait_idle()
    return Job.objects.count(), LedgerEntry.objects.count()
