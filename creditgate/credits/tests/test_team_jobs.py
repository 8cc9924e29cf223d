"""Teams and money through HTTP, on SQLite and PostgreSQL: the cap an owner sets at invite time
binds the new member's first generation request; a member removed while their job runs is no
longer in the team, and the job still settles on the team's account, charged for what it delivered."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from creditgate.credits import selectors, services
from creditgate.credits.models import AccountMember, MemberSpend

from .conftest import make_user


@pytest.fixture
def generation(transactional_db, seeded_catalog, sandbox, settings):
    from creditgate.core import runtime

    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    settings.CREDITGATE_PUBLIC_URL = "http://testserver"
    yield
    runtime.wait_idle()


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def per_image(client) -> int:
    return client.post("/api/v1/credits/estimate/", {"kind": "image", "tier": "basic", "count": 1},
                       format="json").json()["credits"]


def joined_by_invitation(owner, username: str, cap: int | None):
    created = session(owner).post("/api/v1/account/invitations/",
                                  {"email": f"{username}@example.com", "monthly_cap": cap}, format="json").json()
    user = make_user(username)
    token = re.search(r"/team/join/([^/]+)/$", created["link"]).group(1)  # type: ignore[union-attr]
    assert session(user).post("/api/v1/account/invitations/accept/", {"token": token},
                              format="json").status_code == 200
    return user


def test_the_cap_set_at_invite_time_binds_the_new_members_generation_requests(generation):
    owner = make_user("olivia", credits=500)
    price = per_image(session(owner))
    writer = joined_by_invitation(owner, "writer", cap=price)
    api = session(writer)
    refused = api.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 2},
                       format="json")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "member_cap_exceeded"
    assert refused.json()["error"]["details"]["cap"] == price
    accepted = api.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 1},
                        format="json")
    assert accepted.status_code == 202
    account = services.account_for_user(user=owner)
    assert accepted.json()["credits_held"] == price
    spend = MemberSpend.objects.get(account=account, user=writer)
    assert spend.held + spend.spent == price


def test_a_member_removed_while_their_job_runs_still_has_it_settled(generation, monkeypatch):
    from creditgate.core import runtime
    from creditgate.generation import services as generation_services

    owner = make_user("olivia", credits=500)
    account = services.account_for_user(user=owner)
    writer = joined_by_invitation(owner, "writer", cap=None)
    price = per_image(session(owner))

    handed: list = []

    def enqueue(job_id) -> bool:  # no worker yet: the job waits, held
        handed.append(job_id)
        return True

    monkeypatch.setattr(runtime, "enqueue", enqueue)
    accepted = session(writer).post("/api/v1/images/generations/",
                                    {"prompt": "a lighthouse", "tier": "basic", "count": 2}, format="json")
    assert accepted.status_code == 202
    job_id = accepted.json()["id"]
    assert selectors.balance_get(account=account)["held"] == 2 * price

    member_id = AccountMember.objects.get(user=writer).pk
    assert session(owner).post(f"/api/v1/account/members/{member_id}/remove/").status_code == 204
    assert AccountMember.objects.get(user=writer).account != account

    generation_services.job_run(job_id=job_id)            # the worker picks the job up after the removal
    job = session(owner).get(f"/api/v1/jobs/{job_id}/").json()
    assert job["status"] == "succeeded" and job["credits_charged"] == 2 * price
    assert selectors.balance_get(account=account) == {"balance": 500 - 2 * price, "held": 0,
                                                      "available": 500 - 2 * price}
    spend = MemberSpend.objects.get(account=account, user=writer)
    assert (spend.spent, spend.held) == (2 * price, 0)
    # Back in their own account, the writer has spent nothing of it.
    assert selectors.balance_get(account=services.account_for_user(user=writer))["available"] == 0
