"""Teams through HTTP: an owner invites by email with a role and a cap, the link lets a new or an
existing user join, pending invitations are listed, revoked and expire; an owner removes a member
and hands the account over, a member leaves; a user's own account (its credits and history) is
kept while they are in a team and is theirs again when they leave. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from creditgate.credits import selectors, services, team
from creditgate.credits.models import AccountMember, ApiKey, Hold, Invitation, MemberRole

from .conftest import make_user

pytestmark = pytest.mark.django_db


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def invite(owner, email="new@example.com", **body):
    response = session(owner).post("/api/v1/account/invitations/", {"email": email, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def token_of(link: str) -> str:
    match = re.search(r"/team/join/([^/]+)/$", link)
    assert match, link
    return match.group(1)


def emailed_link(to: str) -> str:
    message = [m for m in mail.outbox if to in m.to][-1]
    match = re.search(r"https?://\S+/team/join/\S+/", str(message.body))
    assert match, message.body
    return match.group(0)


@pytest.fixture
def owner(settings):
    settings.CREDITGATE_PUBLIC_URL = "http://testserver"
    return make_user("olivia", credits=100)


def test_an_owner_invites_with_a_role_and_cap_and_the_invitee_joins_with_them(owner):
    created = invite(owner, "Bob@Example.COM", role="member", monthly_cap=25)
    assert created["email"] == "Bob@example.com" and created["state"] == "pending"
    assert created["email_sent"] is True
    link = emailed_link("Bob@example.com")
    assert link == created["link"]
    assert "monthly cap of 25 credits" in mail.outbox[-1].body

    pending = session(owner).get("/api/v1/account/invitations/").json()
    assert [(i["email"], i["role"], i["monthly_cap"]) for i in pending] == [("Bob@example.com", "member", 25)]

    bob = make_user("bob", credits=7)                       # an existing user with credits of their own
    own_account = services.account_for_user(user=bob)
    response = session(bob).post("/api/v1/account/invitations/accept/", {"token": token_of(link)}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["role"], response.json()["monthly_cap"]) == ("member", 25)

    member = AccountMember.objects.get(user=bob)
    assert member.account == services.account_for_user(user=owner) and member.home_account == own_account
    own_account.refresh_from_db()
    assert own_account.available == 7                       # their own credits are kept, untouched
    assert session(owner).get("/api/v1/account/invitations/").json() == []
    names = [m["username"] for m in session(owner).get("/api/v1/account/members/").json()]
    assert names == ["olivia", "bob"]

    # Accepted once: the link does not work again.
    again = session(make_user("eve")).post("/api/v1/account/invitations/accept/", {"token": token_of(link)},
                                           format="json")
    assert again.status_code == 410 and again.json()["error"]["code"] == "invitation_accepted"


def test_the_cap_set_at_invite_time_binds_the_new_members_first_request(owner):
    created = invite(owner, "w@example.com", monthly_cap=3)
    writer = make_user("writer")
    session(writer).post("/api/v1/account/invitations/accept/", {"token": token_of(created["link"])}, format="json")
    account = services.account_for_user(user=owner)
    from creditgate.core.errors import MemberCapExceeded

    with pytest.raises(MemberCapExceeded):
        services.hold_place(account=account, amount=4, idempotency_key="k", fingerprint="f", user=writer)
    hold, _ = services.hold_place(account=account, amount=3, idempotency_key="k2", fingerprint="f", user=writer)
    assert hold.user == writer and hold.account == account


def test_a_revoked_or_expired_invitation_does_not_work(owner, settings):
    first = invite(owner, "a@example.com")
    listed = session(owner).get("/api/v1/account/invitations/").json()
    response = session(owner).post(f"/api/v1/account/invitations/{listed[0]['id']}/revoke/")
    assert response.status_code == 200 and response.json()["state"] == "revoked"
    user = make_user("a")
    refused = session(user).post("/api/v1/account/invitations/accept/", {"token": token_of(first["link"])},
                                 format="json")
    assert refused.status_code == 410 and refused.json()["error"]["code"] == "invitation_revoked"

    second = invite(owner, "a@example.com")
    Invitation.objects.filter(pk=second["id"]).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert session(owner).get("/api/v1/account/invitations/").json() == []
    refused = session(user).post("/api/v1/account/invitations/accept/", {"token": token_of(second["link"])},
                                 format="json")
    assert refused.status_code == 410 and refused.json()["error"]["code"] == "invitation_expired"
    assert AccountMember.objects.get(user=user).account != services.account_for_user(user=owner)

    unknown = session(user).post("/api/v1/account/invitations/accept/", {"token": "nope"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "invitation_not_found"


def test_the_invitation_lifetime_is_a_setting(owner, settings):
    settings.CREDITGATE_INVITATION_DAYS = 2
    created = invite(owner)
    expires = dt.datetime.fromisoformat(created["expires_at"])
    assert dt.timedelta(days=2) - dt.timedelta(minutes=1) < expires - timezone.now() <= dt.timedelta(days=2)


@pytest.mark.parametrize("body, field", [({"email": "not-an-email"}, "email"), ({"email": ""}, "email"),
                                         ({"email": "x@example.com", "role": "admin"}, "role"),
                                         ({"email": "x@example.com", "monthly_cap": -1}, "monthly_cap")])
def test_a_bad_invitation_is_a_400_naming_the_field_and_sends_nothing(owner, body, field):
    response = session(owner).post("/api/v1/account/invitations/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["details"]
    assert not Invitation.objects.exists() and not mail.outbox


def test_a_user_in_a_team_with_others_must_leave_it_first(owner):
    other_owner = make_user("oscar")
    team.member_join(user=make_user("helper"), account=services.account_for_user(user=other_owner))
    created = invite(owner, "oscar@example.com")
    response = session(other_owner).post("/api/v1/account/invitations/accept/",
                                         {"token": token_of(created["link"])}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "account_has_members"
    assert Invitation.objects.get(pk=created["id"]).accepted_at is None

    member = make_user("mia")
    team.member_join(user=member, account=services.account_for_user(user=other_owner))
    created = invite(owner, "mia@example.com")
    response = session(member).post("/api/v1/account/invitations/accept/", {"token": token_of(created["link"])},
                                    format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "leave_team_first"


def test_a_member_leaves_and_gets_her_own_account_back_with_its_credits(owner):
    carol = make_user("carol", credits=12)
    own = services.account_for_user(user=carol)
    team.member_join(user=carol, account=services.account_for_user(user=owner))
    _, key = services.api_key_create(actor=carol, member=services.member_for_user(user=carol), name="k")
    response = session(carol).post("/api/v1/account/leave/")
    assert response.status_code == 204
    member = AccountMember.objects.get(user=carol)
    assert (member.account, member.role, member.home_account) == (own, MemberRole.OWNER, None)
    assert selectors.balance_get(account=own)["available"] == 12
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert bearer.get("/api/v1/credits/balance/").status_code == 401   # keys are revoked on leaving
    # The key stays listed, revoked, in the team it was made in; her own account has none.
    assert [k["name"] for k in session(owner).get("/api/v1/account/api-keys/").json()] == ["k"]
    assert session(carol).get("/api/v1/account/api-keys/").json() == []


def test_the_last_owner_cannot_leave_and_alone_there_is_nothing_to_leave(owner):
    response = session(owner).post("/api/v1/account/leave/")
    assert response.status_code == 400 and response.json()["error"]["code"] == "nothing_to_leave"
    team.member_join(user=make_user("carol"), account=services.account_for_user(user=owner))
    response = session(owner).post("/api/v1/account/leave/")
    assert response.status_code == 400 and response.json()["error"]["code"] == "last_owner"
    assert AccountMember.objects.get(user=owner).is_owner


def test_an_owner_hands_the_account_over_then_may_leave(owner):
    account = services.account_for_user(user=owner)
    carol = make_user("carol")
    team.member_join(user=carol, account=account)
    carol_member = services.member_for_user(user=carol)
    response = session(owner).post(f"/api/v1/account/members/{carol_member.pk}/make-owner/")
    assert response.status_code == 200 and response.json()["role"] == "owner"
    assert AccountMember.objects.get(user=owner).role == MemberRole.MEMBER
    # Now a member: she cannot take it back.
    refused = session(owner).post(f"/api/v1/account/members/{carol_member.pk}/remove/")
    assert refused.status_code in (403, 404)
    assert session(owner).post("/api/v1/account/leave/").status_code == 204
    mine = AccountMember.objects.get(user=owner)
    assert mine.account != account and mine.is_owner          # a new account of her own: she founded the team
    assert AccountMember.objects.get(user=carol).account == account


def test_an_owner_removes_a_member_whose_running_job_still_settles(owner):
    account = services.account_for_user(user=owner)
    carol = make_user("carol")
    team.member_join(user=carol, account=account, monthly_cap=50)
    hold, _ = services.hold_place(account=account, amount=10, idempotency_key="run", fingerprint="f", user=carol)
    response = session(owner).post(f"/api/v1/account/members/{services.member_for_user(user=carol).pk}/remove/")
    assert response.status_code == 204
    assert AccountMember.objects.get(user=carol).account != account
    assert [m["username"] for m in session(owner).get("/api/v1/account/members/").json()] == ["olivia"]

    # The job that was running settles on the team's account, charged to what it delivered.
    assert services.hold_capture(hold_id=hold.pk, amount=6)
    assert Hold.objects.get(pk=hold.pk).state == "captured"
    assert selectors.balance_get(account=account) == {"balance": 94, "held": 0, "available": 94}
    from creditgate.credits.models import MemberSpend

    spend = MemberSpend.objects.get(account=account, user=carol)
    assert (spend.spent, spend.held) == (6, 0)


def test_removing_yourself_is_refused_and_a_member_cannot_remove_anyone(owner):
    account = services.account_for_user(user=owner)
    carol = make_user("carol")
    team.member_join(user=carol, account=account)
    me = services.member_for_user(user=owner)
    response = session(owner).post(f"/api/v1/account/members/{me.pk}/remove/")
    assert response.status_code == 400 and response.json()["error"]["code"] == "remove_yourself"
    assert AccountMember.objects.get(user=owner).account == account


def test_an_invitation_to_someone_already_in_the_account_is_refused(owner):
    carol = make_user("carol")
    carol.email = "carol@example.com"
    carol.save()
    team.member_join(user=carol, account=services.account_for_user(user=owner))
    response = session(owner).post("/api/v1/account/invitations/", {"email": "carol@example.com"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "already_member"


def test_a_new_invitation_to_the_same_address_replaces_the_pending_one(owner):
    first = invite(owner, "x@example.com")
    invite(owner, "x@example.com", monthly_cap=5)
    pending = session(owner).get("/api/v1/account/invitations/").json()
    assert [(i["email"], i["monthly_cap"]) for i in pending] == [("x@example.com", 5)]
    response = session(make_user("x")).post("/api/v1/account/invitations/accept/",
                                            {"token": token_of(first["link"])}, format="json")
    assert response.status_code == 410


def test_an_email_that_cannot_be_sent_still_gives_the_owner_the_link(owner, settings):
    settings.EMAIL_BACKEND = "creditgate.credits.tests.test_invitations.BrokenBackend"
    created = invite(owner, "y@example.com")
    assert created["email_sent"] is False and "/team/join/" in created["link"]


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise OSError("no mail today")


def test_the_join_page_explains_and_joins(owner, client):
    created = invite(owner, "z@example.com", monthly_cap=9)
    path = created["link"].removeprefix("http://testserver")
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "olivia" in html and "monthly cap of 9 credits" in html and "/accounts/signup/?next=" in html
    zed = make_user("zed")
    client.force_login(zed)
    page = client.get(path)
    assert "Join olivia" in page.content.decode()
    response = client.post(path)
    assert response.status_code == 302 and response["Location"] == "/team/"
    assert AccountMember.objects.get(user=zed).monthly_cap == 9
    gone = client.get(path)
    assert gone.status_code == 410 and "already used" in gone.content.decode()


def test_api_keys_made_in_a_team_stay_listed_there(owner):
    carol = make_user("carol")
    team.member_join(user=carol, account=services.account_for_user(user=owner))
    services.api_key_create(actor=owner, member=services.member_for_user(user=carol), name="team-key")
    team.member_leave(user=carol)
    assert ApiKey.objects.get(name="team-key").revoked_at is not None


# --- Races (PostgreSQL: real row locks, two threads with their own connections) -----------------


def _at_once(*calls) -> list:
    import threading

    from django.db import connection

    from creditgate.core.errors import ApplicationError

    barrier = threading.Barrier(len(calls))
    results: list = []

    def run(call):
        try:
            barrier.wait()
            call()
            results.append("ok")
        except ApplicationError as exc:
            results.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return sorted(results)


@pytest.fixture
def pg(transactional_db, settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (set DATABASE_URL)")
    settings.CREDITGATE_PUBLIC_URL = "http://testserver"


@pytest.mark.postgres
def test_two_owners_leaving_at_once_leave_the_account_one_owner(pg):
    first = make_user("first")
    account = services.account_for_user(user=first)
    second = make_user("second")
    team.member_join(user=second, account=account, role=MemberRole.OWNER)
    team.member_join(user=make_user("member"), account=account)
    assert _at_once(lambda: team.member_leave(user=first), lambda: team.member_leave(user=second)) == [
        "last_owner", "ok"]
    assert AccountMember.objects.filter(account=account, role=MemberRole.OWNER).count() == 1


@pytest.mark.postgres
def test_one_invitation_accepted_by_two_users_at_once_lets_one_in(pg):
    owner = make_user("olivia")
    _, link, _ = team.invitation_create(actor=owner, email="both@example.com")
    one, two = make_user("one"), make_user("two")
    results = _at_once(lambda: team.invitation_accept(user=one, token=token_of(link)),
                       lambda: team.invitation_accept(user=two, token=token_of(link)))
    assert results == ["invitation_accepted", "ok"]
    assert AccountMember.objects.filter(account=services.account_for_user(user=owner)).count() == 2
