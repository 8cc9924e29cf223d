"""Members see only their own work; owners see the account's, with who ran each (issue 22).

The matrix, through HTTP with each user's own token: (owner, member m1, member m2, another
account) × (job detail, job list, image, ledger lines, usage, the job's page, an Idempotency-Key
replay). Runs on SQLite and PostgreSQL alike; the race of two members on one key is in
test_member_isolation_race.py (PostgreSQL, real processes).
"""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from creditgate.core import reconciliation, runtime
from creditgate.credits import services as credits_services
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance, make_user

pytestmark = pytest.mark.usefixtures("gen_env")

PRICE = 1  # a basic image


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def member_of(owner, username: str):
    user = make_user(username, credits=0)
    credits_services.account_member_add(account=credits_services.account_for_user(user=owner), user=user)
    return user


def run_job(client, prompt: str, key: str | None = None) -> dict:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = client.post("/api/v1/images/generations/", {"prompt": prompt, "tier": "basic", "count": 1},
                           format="json", **headers)
    assert response.status_code == 202, response.content
    runtime.wait_idle()
    return client.get(f"/api/v1/jobs/{response.json()['id']}/").json()


@pytest.fixture
def team():
    """An owner and two members of one account, and a user of another account, each with a
    finished one-image job."""
    owner = make_user("olga", credits=100)
    users = {"owner": owner, "m1": member_of(owner, "mia"), "m2": member_of(owner, "max"),
             "other": make_user("eve", credits=100)}
    clients = {role: token_client(user) for role, user in users.items()}
    jobs = {role: run_job(clients[role], f"the {role}'s fox") for role in users}
    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    return users, clients, jobs


# Who sees whose job: the owner the account's three, a member their own, nobody another account's.
SEES = {"owner": {"owner", "m1", "m2"}, "m1": {"m1"}, "m2": {"m2"}, "other": {"other"}}


def test_job_detail_images_and_page_answer_only_whom_they_should(team):
    users, clients, jobs = team
    for viewer, client in clients.items():
        page = APIClient()
        page.force_login(users[viewer])  # the job's page (/jobs/<id>/) goes through the same selector
        for whose, job in jobs.items():
            detail = client.get(f"/api/v1/jobs/{job['id']}/")
            image = client.get(f"/api/v1/jobs/{job['id']}/images/0/")
            html = page.get(f"/jobs/{job['id']}/")
            if whose in SEES[viewer]:
                assert detail.status_code == 200, (viewer, whose)
                assert detail.json()["user"] == {"id": users[whose].pk, "username": users[whose].username}
                assert image.status_code == 200 and image["Content-Type"] == "image/png"
                assert html.status_code == 200
            else:  # another member's job is as absent as another account's
                assert detail.status_code == 404, (viewer, whose, detail.content)
                assert detail.json()["error"]["code"] == "not_found"
                assert image.status_code == 404 and image.json()["error"]["code"] == "not_found"
                assert html.status_code == 404


def test_job_list_holds_only_the_viewers_jobs_with_who_ran_each(team):
    users, clients, jobs = team
    for viewer, client in clients.items():
        listed = client.get("/api/v1/jobs/").json()
        assert listed["count"] == len(SEES[viewer])
        assert {j["id"] for j in listed["results"]} == {jobs[whose]["id"] for whose in SEES[viewer]}
        assert {j["id"]: j["user"]["username"] for j in listed["results"]} == {
            jobs[whose]["id"]: users[whose].username for whose in SEES[viewer]}


def job_lines(page: dict) -> dict[str, set[str]]:
    """{job id: {username of the line}} of the ledger lines that belong to a job."""
    lines: dict[str, set[str]] = {}
    for entry in page["results"]:
        if entry["reference"].startswith("job:"):
            lines.setdefault(entry["reference"][4:], set()).add(entry["user"]["username"])
    return lines


def test_ledger_lines_of_jobs_are_their_runners_and_the_owners(team):
    users, clients, jobs = team
    for viewer, client in clients.items():
        page = client.get("/api/v1/credits/transactions/").json()
        assert job_lines(page) == {jobs[whose]["id"]: {users[whose].username} for whose in SEES[viewer]}
        # Each job: its hold, its capture (one image delivered of one: nothing released).
        for whose in SEES[viewer]:
            kinds = sorted(e["kind"] for e in page["results"] if e["reference"] == f"job:{jobs[whose]['id']}")
            assert kinds == ["capture", "hold"]
        # The account's own credit lines (the grant) belong to no job and no member: shown to all.
        grants = [e for e in page["results"] if e["kind"] == "grant"]
        assert len(grants) == 1 and grants[0]["user"] is None
        assert page["count"] == 1 + 2 * len(SEES[viewer])


def test_usage_counts_the_viewers_jobs_and_the_owner_the_accounts(team):
    _, clients, _ = team
    for viewer, client in clients.items():
        usage = client.get("/api/v1/credits/usage/?group=tier").json()
        assert usage["total"] == PRICE * len(SEES[viewer]), viewer
        assert usage["rows"] == [{"tier": "basic", "label": "Basic", "credits": PRICE * len(SEES[viewer])}]


def test_the_balance_is_the_accounts_for_owner_and_members_alike(team):
    _, clients, _ = team
    shared = clients["owner"].get("/api/v1/credits/balance/").json()
    assert shared == {"balance": 100 - 3 * PRICE, "held": 0, "available": 100 - 3 * PRICE}
    assert clients["m1"].get("/api/v1/credits/balance/").json() == shared
    assert clients["m2"].get("/api/v1/credits/balance/").json() == shared


def test_one_idempotency_key_sent_by_two_members_makes_two_jobs_each_charged_once(team):
    users, clients, _ = team
    key = "order-42"
    start = balance(users["owner"])["available"]
    first = run_job(clients["m1"], "a fox", key=key)
    second = run_job(clients["m2"], "a fox", key=key)  # the same key and the same body, another member

    assert first["id"] != second["id"]
    assert (first["user"]["username"], second["user"]["username"]) == ("mia", "max")
    assert first["credits_charged"] == second["credits_charged"] == PRICE
    # Each member's replay is their own job, charged once.
    for role, job in (("m1", first), ("m2", second)):
        replay = clients[role].post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 1},
                                    format="json", HTTP_IDEMPOTENCY_KEY=key)
        assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == job["id"]
    # The owner's own use of the key is a third job; another body under a member's key is still a 409.
    owners = run_job(clients["owner"], "a fox", key=key)
    assert owners["id"] not in {first["id"], second["id"]} and owners["user"]["username"] == "olga"
    conflict = clients["m2"].post("/api/v1/images/generations/", {"prompt": "a cat", "tier": "basic", "count": 1},
                                  format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"
    assert Job.objects.filter(idempotency_key=key).count() == 3
    assert start - balance(users["owner"])["available"] == 3 * PRICE
    assert reconciliation.reconciliation_audit() == []
