"""Who may change what, through HTTP: every role (owner, member, a request made with an API key)
× every field the team and webhook endpoints accept. A refused change is a 403 (or a 400 naming
the rule) and changes nothing; an allowed one is a 200 and is stored.

The rule (README, "Who may change what"): an owner changes everything in the account. A member
renames and revokes their own keys and may lower their key's cap (or set one where there is
none), never raise or remove one; they change nothing of anyone else's, no role, no member cap,
no webhook endpoint, and invite no one. A request made with an API key changes nothing at all.
"""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict
from rest_framework.test import APIClient

from creditgate.credits import services, team
from creditgate.credits.models import AccountMember, ApiKey, Invitation
from creditgate.webhooks.models import WebhookEndpoint

from .conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(settings):
    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    owner = make_user("olivia", credits=100)
    account = services.account_for_user(user=owner)
    carol, dave = make_user("carol"), make_user("dave")
    team.member_join(user=carol, account=account)
    team.member_join(user=dave, account=account)
    carol_member = services.member_for_user(user=carol)
    # The reproduction: an owner makes Carol a key with a cap of 10.
    carol_key, carol_secret = services.api_key_create(actor=owner, member=carol_member, name="carol-cms",
                                                      monthly_cap=10)
    own_key, _ = services.api_key_create(actor=carol, member=carol_member, name="carol-own")
    dave_key, _ = services.api_key_create(actor=dave, member=services.member_for_user(user=dave), name="dave-k",
                                          monthly_cap=30)
    owner_key, owner_secret = services.api_key_create(actor=owner, member=services.member_for_user(user=owner),
                                                      name="olivia-k")
    from creditgate.webhooks import services as webhook_services

    endpoint, _ = webhook_services.endpoint_create(actor=owner, url="http://127.0.0.1:9/hook")
    return {"owner": owner, "carol": carol, "dave": dave, "carol_key": carol_key, "carol_secret": carol_secret,
            "own_key": own_key, "dave_key": dave_key, "owner_key": owner_key, "owner_secret": owner_secret,
            "endpoint": endpoint, "account": account}


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def state() -> list:
    """Everything a refused request must leave as it was."""
    return [
        sorted((m.user_id, m.account_id, m.role, m.monthly_cap) for m in AccountMember.objects.all()),
        sorted((k.pk, k.name, k.monthly_cap, k.revoked_at) for k in ApiKey.objects.all()),
        sorted(tuple(sorted(model_to_dict(e, exclude=["secret_encrypted"]).items()))
               for e in WebhookEndpoint.objects.all()),
        Invitation.objects.count(),
    ]


def assert_refused(response, before, *codes) -> None:
    assert response.status_code in (400, 403), response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"]
    if codes:
        assert body["error"]["code"] in codes, body
    assert state() == before


# --- The reproduction -----------------------------------------------------------------------------


def test_a_member_cannot_lift_the_cap_an_owner_put_on_her_key(world):
    before = state()
    response = session(world["carol"]).patch(f"/api/v1/account/api-keys/{world['carol_key'].pk}/",
                                             {"monthly_cap": None}, format="json")
    assert_refused(response, before, "cap_change_not_allowed")
    assert response.status_code == 403
    assert "monthly_cap" in response.json()["error"]["details"]
    world["carol_key"].refresh_from_db()
    assert world["carol_key"].monthly_cap == 10


@pytest.mark.parametrize("cap", [None, 11, 1000])
def test_a_member_may_neither_raise_nor_remove_her_keys_cap(world, cap):
    before = state()
    response = session(world["carol"]).patch(f"/api/v1/account/api-keys/{world['carol_key'].pk}/",
                                             {"monthly_cap": cap}, format="json")
    assert_refused(response, before, "cap_change_not_allowed")


@pytest.mark.parametrize("cap", [10, 9, 0])
def test_a_member_may_lower_her_keys_cap(world, cap):
    response = session(world["carol"]).patch(f"/api/v1/account/api-keys/{world['carol_key'].pk}/",
                                             {"monthly_cap": cap}, format="json")
    assert response.status_code == 200 and response.json()["monthly_cap"] == cap
    world["carol_key"].refresh_from_db()
    assert world["carol_key"].monthly_cap == cap


def test_a_member_may_put_a_cap_on_her_uncapped_key_and_then_not_lift_it(world):
    url = f"/api/v1/account/api-keys/{world['own_key'].pk}/"
    carol = session(world["carol"])
    assert carol.patch(url, {"monthly_cap": 50}, format="json").json()["monthly_cap"] == 50
    before = state()
    assert_refused(carol.patch(url, {"monthly_cap": None}, format="json"), before, "cap_change_not_allowed")
    assert_refused(carol.patch(url, {"monthly_cap": 51}, format="json"), before, "cap_change_not_allowed")


def test_a_refused_cap_change_does_not_rename_the_key_either(world):
    before = state()
    response = session(world["carol"]).patch(f"/api/v1/account/api-keys/{world['carol_key'].pk}/",
                                             {"name": "renamed", "monthly_cap": None}, format="json")
    assert_refused(response, before)
    world["carol_key"].refresh_from_db()
    assert world["carol_key"].name == "carol-cms"


def test_a_member_renames_and_revokes_her_own_keys(world):
    carol = session(world["carol"])
    key = world["carol_key"]
    assert carol.patch(f"/api/v1/account/api-keys/{key.pk}/", {"name": "cms"}, format="json").json()["name"] == "cms"
    assert carol.post(f"/api/v1/account/api-keys/{key.pk}/revoke/").json()["revoked_at"]
    assert bearer(world["carol_secret"]).get("/api/v1/credits/balance/").status_code == 401


# --- An owner changes everything ------------------------------------------------------------------


@pytest.mark.parametrize("body", [{"monthly_cap": None}, {"monthly_cap": 500}, {"monthly_cap": 1},
                                  {"name": "by-olivia"}])
def test_an_owner_changes_any_field_of_a_members_key(world, body):
    response = session(world["owner"]).patch(f"/api/v1/account/api-keys/{world['carol_key'].pk}/", body,
                                             format="json")
    assert response.status_code == 200
    world["carol_key"].refresh_from_db()
    for field, value in body.items():
        assert getattr(world["carol_key"], field) == value


@pytest.mark.parametrize("body", [{"monthly_cap": 7}, {"monthly_cap": None}, {"role": "owner"}, {"role": "member"}])
def test_an_owner_changes_members_caps_and_roles(world, body):
    carol_member = services.member_for_user(user=world["carol"])
    response = session(world["owner"]).patch(f"/api/v1/account/members/{carol_member.pk}/", body, format="json")
    assert response.status_code == 200
    carol_member.refresh_from_db()
    for field, value in body.items():
        assert getattr(carol_member, field) == value


def test_an_owner_revokes_a_members_key(world):
    response = session(world["owner"]).post(f"/api/v1/account/api-keys/{world['dave_key'].pk}/revoke/")
    assert response.status_code == 200 and response.json()["revoked_at"]


def test_the_last_owner_cannot_demote_herself(world):
    owner_member = services.member_for_user(user=world["owner"])
    before = state()
    response = session(world["owner"]).patch(f"/api/v1/account/members/{owner_member.pk}/", {"role": "member"},
                                             format="json")
    assert_refused(response, before)
    assert "role" in response.json()["error"]["details"]


# --- A member changes nothing of anyone else's, nor her own role or cap ---------------------------


def _member_requests(w) -> list[tuple[str, str, dict | None]]:
    carol_member = services.member_for_user(user=w["carol"])
    dave_member = services.member_for_user(user=w["dave"])
    owner_member = services.member_for_user(user=w["owner"])
    endpoint = f"/api/v1/webhooks/endpoints/{w['endpoint'].pk}/"
    return [
        ("patch", f"/api/v1/account/members/{carol_member.pk}/", {"monthly_cap": None}),
        ("patch", f"/api/v1/account/members/{carol_member.pk}/", {"monthly_cap": 5}),
        ("patch", f"/api/v1/account/members/{carol_member.pk}/", {"role": "owner"}),
        ("patch", f"/api/v1/account/members/{dave_member.pk}/", {"monthly_cap": 1}),
        ("patch", f"/api/v1/account/members/{owner_member.pk}/", {"role": "member"}),
        ("post", f"/api/v1/account/members/{dave_member.pk}/remove/", None),
        ("post", f"/api/v1/account/members/{carol_member.pk}/make-owner/", None),
        ("post", f"/api/v1/account/members/{owner_member.pk}/remove/", None),
        ("patch", f"/api/v1/account/api-keys/{w['dave_key'].pk}/", {"name": "x"}),
        ("patch", f"/api/v1/account/api-keys/{w['dave_key'].pk}/", {"monthly_cap": 1}),
        ("post", f"/api/v1/account/api-keys/{w['dave_key'].pk}/revoke/", None),
        ("patch", f"/api/v1/account/api-keys/{w['owner_key'].pk}/", {"name": "x"}),
        ("post", f"/api/v1/account/api-keys/{w['owner_key'].pk}/revoke/", None),
        ("post", "/api/v1/account/api-keys/", {"name": "for dave", "member": dave_member.pk}),
        ("post", "/api/v1/account/invitations/", {"email": "eve@example.com"}),
        ("post", "/api/v1/webhooks/endpoints/", {"url": "http://127.0.0.1:9/other"}),
        ("patch", endpoint, {"url": "http://127.0.0.1:9/elsewhere"}),
        ("patch", endpoint, {"description": "mine now"}),
        ("patch", endpoint, {"all_jobs": False}),
        ("patch", endpoint, {"is_active": False}),
        ("delete", endpoint, None),
        ("post", endpoint + "test/", None),
    ]


def test_a_member_is_refused_every_change_outside_her_own_keys(world):
    carol = session(world["carol"])
    for method, url, body in _member_requests(world):
        before = state()
        response = getattr(carol, method)(url, body, format="json") if body is not None else getattr(carol, method)(url)
        # Another member's key or member row is not hers to see: a 404 changes nothing either.
        assert response.status_code in (400, 403, 404), (method, url, body, response.status_code)
        assert response.json()["error"]["code"], (method, url)
        assert state() == before, (method, url, body)


def test_unknown_fields_change_nothing(world):
    """`revoked_at`, `member` or `role` on a key, `user` or `account` on a member are not fields
    the API accepts: the key stays as it was."""
    carol = session(world["carol"])
    key = world["carol_key"]
    services.api_key_revoke(actor=world["owner"], api_key=key)
    before = state()
    response = carol.patch(f"/api/v1/account/api-keys/{key.pk}/",
                           {"revoked_at": None, "member": 1, "role": "owner", "created_by": None}, format="json")
    assert response.status_code == 200
    assert state() == before
    assert bearer(world["carol_secret"]).get("/api/v1/credits/balance/").status_code == 401


# --- A request made with an API key changes nothing -----------------------------------------------


def test_a_request_made_with_an_api_key_changes_nothing_even_an_owners(world):
    for secret in (world["owner_secret"], world["carol_secret"]):
        client = bearer(secret)
        requests = [
            *_member_requests(world),
            ("patch", f"/api/v1/account/api-keys/{world['carol_key'].pk}/", {"monthly_cap": None}),
            ("patch", f"/api/v1/account/api-keys/{world['carol_key'].pk}/", {"monthly_cap": 1}),
            ("patch", f"/api/v1/account/api-keys/{world['carol_key'].pk}/", {"name": "x"}),
            ("post", f"/api/v1/account/api-keys/{world['carol_key'].pk}/revoke/", None),
            ("post", "/api/v1/account/api-keys/", {"name": "uncapped"}),
            ("post", "/api/v1/account/leave/", None),
            ("post", "/api/v1/account/invitations/accept/", {"token": "x" * 40}),
        ]
        for method, url, body in requests:
            before = state()
            response = (getattr(client, method)(url, body, format="json") if body is not None
                        else getattr(client, method)(url))
            assert response.status_code == 403, (method, url, body, response.status_code)
            assert response.json()["error"]["code"] == "permission_denied"
            assert state() == before, (method, url, body)
