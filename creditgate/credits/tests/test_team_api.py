"""The team API through HTTP: members with their caps and month's spending, API keys from
creation to revocation, the legacy token, and the 402 of a cap on a real generation request."""

import hashlib

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from creditgate.core.errors import InvalidRequest
from creditgate.credits import selectors, services
from creditgate.credits.models import ApiKey, Hold, MemberRole
from creditgate.credits.tests.factories import make_team

from .conftest import make_user

pytestmark = pytest.mark.django_db


def client_for(user=None, *, bearer=None, token=None):
    client = APIClient()
    if user is not None:
        client.force_login(user)  # a session, as the page has
    if bearer:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer}")
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def team():
    return make_team(credits=200)


def test_an_owner_sees_every_member_with_the_months_spending_and_sets_a_cap(team):
    owner, writer, account = team
    writer_member = services.member_for_user(user=writer)
    hold, _ = services.hold_place(account=account, amount=7, idempotency_key="a", fingerprint="f", user=writer)
    services.hold_capture(hold_id=hold.pk, amount=4)
    services.hold_place(account=account, amount=2, idempotency_key="b", fingerprint="f", user=writer)
    api = client_for(owner)
    members = api.get("/api/v1/account/members/").json()
    assert [(m["username"], m["role"], m["is_you"]) for m in members] == [
        ("owner", "owner", True), ("writer", "member", False)]
    assert members[1] | {"joined_at": None} == {
        "id": writer_member.pk, "username": "writer", "role": "member", "monthly_cap": None,
        "month": selectors.spending_month().strftime("%Y-%m"), "spent": 4, "held": 2, "used": 6, "over_cap": False,
        "is_you": False, "joined_at": None}
    response = api.patch(f"/api/v1/account/members/{writer_member.pk}/", {"monthly_cap": 25}, format="json")
    assert response.status_code == 200 and response.json()["monthly_cap"] == 25
    writer_member.refresh_from_db()
    assert writer_member.monthly_cap == 25


def test_a_member_sees_only_themself_and_cannot_change_caps(team):
    owner, writer, _ = team
    api = client_for(writer)
    members = api.get("/api/v1/account/members/").json()
    assert [m["username"] for m in members] == ["writer"]
    me = members[0]["id"]
    response = api.patch(f"/api/v1/account/members/{me}/", {"monthly_cap": None}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    owner_id = services.member_for_user(user=owner).pk
    assert api.get(f"/api/v1/account/members/{owner_id}/").status_code == 404


def test_bad_cap_input_is_a_400_and_changes_nothing(team):
    owner, writer, _ = team
    writer_id = services.member_for_user(user=writer).pk
    for body in ({"monthly_cap": -1}, {"monthly_cap": "5"}, {"role": "king"}, {"monthly_cap": 1.5}):
        response = client_for(owner).patch(f"/api/v1/account/members/{writer_id}/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "invalid_request"
    assert services.member_for_user(user=writer).monthly_cap is None


def test_an_api_key_is_shown_once_stored_hashed_used_and_then_revoked(team):
    owner, writer, _account = team
    writer_id = services.member_for_user(user=writer).pk
    api = client_for(owner)
    created = api.post("/api/v1/account/api-keys/", {"name": "CMS plugin", "member": writer_id, "monthly_cap": 50},
                       format="json")
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert key.startswith("cg_") and body["hint"] == key[:11] + "…" and body["username"] == "writer"
    assert body["monthly_cap"] == 50 and body["last_used_at"] is None and body["revoked_at"] is None

    # Hashed at rest: the row holds neither the key nor its secret, only a SHA-512 of it.
    row = ApiKey.objects.get(pk=body["id"])
    secret = key.split(".", 1)[1]
    stored = " ".join(str(v) for v in ApiKey.objects.filter(pk=row.pk).values().get().values())
    assert secret not in stored and key not in stored
    assert row.hashed_key == "sha512$$" + hashlib.sha512(key[3:].encode()).hexdigest()

    # Never shown twice: not in the list, not in the key's own page.
    for response in (api.get("/api/v1/account/api-keys/"), api.get(f"/api/v1/account/api-keys/{row.pk}/")):
        assert secret not in response.content.decode() and "key" not in (response.json()[0] if isinstance(
            response.json(), list) else response.json())

    # Used: the key acts as the writer in the owner's account, and its use is recorded.
    with_key = client_for(bearer=key)
    balance = with_key.get("/api/v1/credits/balance/")
    assert balance.status_code == 200 and balance.json()["available"] == 200
    row.refresh_from_db()
    assert row.last_used_at is not None
    assert with_key.get("/api/v1/account/members/").json()[0]["username"] == "writer"

    # Revoked: 401 from then on, saying why; the key stays listed as revoked.
    assert api.post(f"/api/v1/account/api-keys/{row.pk}/revoke/").json()["revoked_at"] is not None
    refused = with_key.get("/api/v1/credits/balance/")
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This API key was revoked."
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert api.get("/api/v1/account/api-keys/").json()[0]["revoked_at"] is not None


def test_a_wrong_or_malformed_key_is_a_401(team):
    owner, _, _ = team
    _, key = services.api_key_create(actor=owner, member=services.member_for_user(user=owner), name="k")
    for bad in (key[:-1] + ("x" if key[-1] != "x" else "y"), "cg_nope.nope", "sk-123", key + " extra"):
        response = client_for(bearer=bad).get("/api/v1/credits/balance/")
        assert response.status_code == 401, bad
        assert response.json()["error"]["code"] in ("authentication_failed", "not_authenticated")


def test_a_key_may_read_but_not_make_keys_or_change_caps(team):
    owner, writer, _ = team
    _, key = services.api_key_create(actor=owner, member=services.member_for_user(user=owner), name="owner's key")
    with_key = client_for(bearer=key)
    assert with_key.get("/api/v1/account/api-keys/").status_code == 200
    response = with_key.post("/api/v1/account/api-keys/", {"name": "escape"}, format="json")
    assert response.status_code == 403 and "API keys cannot" in response.json()["error"]["message"]
    writer_id = services.member_for_user(user=writer).pk
    assert with_key.patch(f"/api/v1/account/members/{writer_id}/", {"monthly_cap": None},
                          format="json").status_code == 403
    assert ApiKey.objects.count() == 1


def test_members_make_their_own_keys_only_and_see_only_their_own(team):
    owner, writer, _ = team
    services.api_key_create(actor=owner, member=services.member_for_user(user=owner), name="owner's")
    api = client_for(writer)
    mine = api.post("/api/v1/account/api-keys/", {"name": "mine"}, format="json")
    assert mine.status_code == 201 and mine.json()["username"] == "writer"
    owner_id = services.member_for_user(user=owner).pk
    assert api.post("/api/v1/account/api-keys/", {"name": "theirs", "member": owner_id},
                    format="json").status_code == 404
    assert [k["name"] for k in api.get("/api/v1/account/api-keys/").json()] == ["mine"]
    owners_key = ApiKey.objects.get(name="owner's")
    assert api.post(f"/api/v1/account/api-keys/{owners_key.pk}/revoke/").status_code == 404
    assert {k["name"] for k in client_for(owner).get("/api/v1/account/api-keys/").json()} == {"mine", "owner's"}


def test_the_legacy_token_keeps_working_until_it_is_deleted(team):
    owner, _, _ = team
    token = Token.objects.create(user=owner)
    assert client_for(token=token.key).get("/api/v1/credits/balance/").status_code == 200
    token.delete()
    assert client_for(token=token.key).get("/api/v1/credits/balance/").status_code == 401


def test_moving_a_member_to_another_account_revokes_their_keys():
    from creditgate.credits import team

    old_owner = make_user("old-owner")
    mover = make_user("mover")
    services.account_member_add(account=services.account_for_user(user=old_owner), user=mover)
    _, key = services.api_key_create(actor=mover, member=services.member_for_user(user=mover), name="k")
    new_account = services.account_for_user(user=make_user("new-owner"))
    mover = get_user_model().objects.get(pk=mover.pk)
    # In a team: they leave it first (straight from one team to another is refused).
    with pytest.raises(InvalidRequest):
        services.account_member_add(account=new_account, user=mover)
    assert client_for(bearer=key).get("/api/v1/credits/balance/").status_code == 200
    team.member_leave(user=mover)
    services.account_member_add(account=new_account, user=mover)
    assert client_for(bearer=key).get("/api/v1/credits/balance/").status_code == 401
    assert services.member_for_user(user=mover).role == MemberRole.MEMBER


@pytest.fixture
def generation(transactional_db, seeded_catalog, sandbox, settings):
    from creditgate.core import runtime

    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    yield
    runtime.wait_idle()


def test_a_generation_request_over_the_cap_is_a_402_and_one_within_it_is_held_for_the_member(generation):
    owner = make_user("owner", credits=500)
    account = services.account_for_user(user=owner)
    writer = make_user("writer")
    services.account_member_add(account=account, user=writer)
    estimator = APIClient()
    estimator.force_authenticate(owner)
    per_image = estimator.post("/api/v1/credits/estimate/", {"kind": "image", "tier": "basic", "count": 1},
                               format="json").json()["credits"]
    services.member_update(actor=owner, member=services.member_for_user(user=writer), monthly_cap=2 * per_image)
    _, key = services.api_key_create(actor=owner, member=services.member_for_user(user=writer), name="CMS")
    with_key = client_for(bearer=key)

    refused = with_key.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 3},
                            format="json")
    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "member_cap_exceeded"
    assert error["details"] | {"month": None} == {"cap": 2 * per_image, "spent": 0, "held": 0,
                                                 "required": 3 * per_image, "month": None}
    assert Hold.objects.count() == 0

    accepted = with_key.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 2},
                             format="json")
    assert accepted.status_code == 202
    hold = Hold.objects.get()
    assert hold.api_key is not None
    assert (hold.user_id, hold.api_key.name, hold.amount) == (writer.pk, "CMS", 2 * per_image)
    # The owner is not capped by the writer's cap.
    assert client_for(owner).post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 3},
                                  format="json").status_code == 202


def test_the_schema_declares_the_team_and_webhook_operations_with_their_errors(tmp_path):
    import yaml
    from django.core.management import call_command

    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    paths = yaml.safe_load(out.read_text())["paths"]
    expected = {
        "/api/v1/account/members/": {"get"}, "/api/v1/account/members/{member_id}/": {"get", "patch"},
        "/api/v1/account/api-keys/": {"get", "post"}, "/api/v1/account/api-keys/{key_id}/": {"get", "patch"},
        "/api/v1/account/api-keys/{key_id}/revoke/": {"post"},
        "/api/v1/webhooks/endpoints/": {"get", "post"},
        "/api/v1/webhooks/endpoints/{endpoint_id}/": {"get", "patch", "delete"},
        "/api/v1/webhooks/endpoints/{endpoint_id}/test/": {"post"},
        "/api/v1/webhooks/deliveries/": {"get"}, "/api/v1/webhooks/deliveries/{delivery_id}/": {"get"},
    }
    for path, methods in expected.items():
        assert set(paths[path]) - {"parameters"} == methods, path
    assert {"201", "400", "403"} <= set(paths["/api/v1/account/api-keys/"]["post"]["responses"])
    assert "402" in paths["/api/v1/images/generations/"]["post"]["responses"]
    assert any(p["name"] == "Webhook-Endpoint" for p in paths["/api/v1/images/generations/"]["post"]["parameters"])
