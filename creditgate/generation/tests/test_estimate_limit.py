"""The estimate tells the truth before Generate (issue 26): it names the limit that binds the
caller's next job (the balance, the member's monthly cap or the API key's) and whether it covers
the request, and a generation request it says is not covered is refused by that same limit.

Through HTTP and the database (on PostgreSQL too when DATABASE_URL points at it). Prices are read
from ai-config, never written here."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from creditgate.credits import services as credits_services
from creditgate.credits.models import Hold

from .conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(seeded_catalog, settings):
    settings.CREDITGATE_SANDBOX = True  # every seeded tier is served
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    return seeded_catalog


def client_for(user=None, *, key: str | None = None) -> APIClient:
    client = APIClient()
    if key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    else:
        client.force_authenticate(user)
    return client


def dearest_tier(client) -> dict:
    return max(client.get("/api/v1/system/ai-config/").json()["image_qualities"], key=lambda q: q["credits_per_image"])


def estimate(client, tier: dict, count: int) -> dict:
    response = client.post("/api/v1/credits/estimate/", {"kind": "image", "tier": tier["tier"], "count": count},
                           format="json")
    assert response.status_code == 200, response.content
    return response.json()


def team(owner_credits: int, *, cap: int | None):
    owner = make_user("owner", credits=owner_credits)
    writer = make_user("writer", credits=0)
    member = credits_services.account_member_add(account=credits_services.account_for_user(user=owner), user=writer)
    if cap is not None:
        credits_services.member_update(actor=owner, member=member, monthly_cap=cap)
    return owner, writer, member


def test_without_a_cap_the_balance_binds_and_says_whether_it_covers(catalog):
    user = make_user("solo", credits=40)
    api = client_for(user)
    tier = dearest_tier(api)

    fits = estimate(api, tier, 1)
    assert fits["limit"] == {"kind": "balance", "remaining": 40, "cap": None, "used": None, "covers": True}
    too_many = 40 // tier["credits_per_image"] + 1
    assert estimate(api, tier, too_many)["limit"]["covers"] is False


def test_a_members_cap_that_binds_is_named_before_the_request_and_refuses_it(catalog):
    # The case: a member with a cap of 10 picks the dearest tier x 3 on an account with plenty.
    _, writer, _ = team(500, cap=10)
    api = client_for(writer)
    tier = dearest_tier(api)
    count = 10 // tier["credits_per_image"] + 1  # just over the cap

    quote = estimate(api, tier, count)

    assert quote["credits"] == tier["credits_per_image"] * count
    assert quote["limit"] == {"kind": "member_cap", "remaining": 10, "cap": 10, "used": 0, "covers": False}
    refused = api.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": tier["tier"], "count": count},
                       format="json")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "member_cap_exceeded"
    assert not Hold.objects.filter(user=writer).exists()


def test_what_the_member_used_this_month_counts_against_the_cap(catalog):
    owner, writer, _ = team(500, cap=12)
    api = client_for(writer)
    cheapest = min(api.get("/api/v1/system/ai-config/").json()["image_qualities"], key=lambda q: q["credits_per_image"])
    account = credits_services.account_for_user(user=owner)
    credits_services.hold_place(account=account, amount=7, idempotency_key="running-job", fingerprint="f",
                                user=writer)  # a running job of the writer's: held, so used

    limit = estimate(api, cheapest, 1)["limit"]

    assert limit["kind"] == "member_cap" and (limit["used"], limit["remaining"]) == (7, 5)
    assert limit["covers"] is (cheapest["credits_per_image"] <= 5)


def test_the_balance_binds_when_it_allows_less_than_the_cap(catalog):
    _, writer, _ = team(8, cap=100)
    limit = estimate(client_for(writer), dearest_tier(client_for(writer)), 1)["limit"]
    assert limit["kind"] == "balance" and limit["remaining"] == 8


def test_an_api_keys_cap_binds_requests_made_with_that_key(catalog):
    owner, writer, member = team(500, cap=50)
    _, key = credits_services.api_key_create(actor=owner, member=member, name="CMS", monthly_cap=3)
    with_key = client_for(key=key)

    limit = estimate(with_key, dearest_tier(with_key), 1)["limit"]
    assert limit == {"kind": "api_key_cap", "remaining": 3, "cap": 3, "used": 0,
                     "covers": dearest_tier(with_key)["credits_per_image"] <= 3}
    # The member's own session is not bound by the key's cap.
    assert estimate(client_for(writer), dearest_tier(with_key), 1)["limit"]["kind"] == "member_cap"


def test_a_cap_set_below_this_months_use_is_flagged_and_leaves_nothing(catalog):
    owner, writer, member = team(500, cap=None)
    account = credits_services.account_for_user(user=owner)
    credits_services.hold_place(account=account, amount=77, idempotency_key="spent", fingerprint="f", user=writer)
    owner_api = client_for(owner)

    response = owner_api.patch(f"/api/v1/account/members/{member.pk}/", {"monthly_cap": 50}, format="json")

    assert response.status_code == 200
    assert (response.json()["used"], response.json()["monthly_cap"], response.json()["over_cap"]) == (77, 50, True)
    rows = {m["username"]: m for m in owner_api.get("/api/v1/account/members/").json()}
    assert rows["writer"]["over_cap"] is True and rows["owner"]["over_cap"] is False
    limit = estimate(client_for(writer), dearest_tier(owner_api), 1)["limit"]
    assert (limit["kind"], limit["remaining"], limit["covers"]) == ("member_cap", 0, False)


def test_the_estimate_of_an_article_carries_the_limit_too(catalog):
    _, writer, _ = team(500, cap=1)
    api = client_for(writer)
    tier = dearest_tier(api)
    response = api.post("/api/v1/credits/estimate/", {"kind": "article", "prompt": "foxes", "tier": tier["tier"],
                                                      "image_count": 1}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["limit"]["kind"] == "member_cap" and response.json()["limit"]["covers"] is False
