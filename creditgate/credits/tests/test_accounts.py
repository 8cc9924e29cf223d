"""Accounts through django-allauth, through HTTP: sign up, verify the email, log in and out, reset
the password; sign-up closed by the operator; a new user has an account of their own; the emails
go through Resend (the sandbox records them)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from creditgate.credits import services
from creditgate.credits.models import AccountMember, MemberRole

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-enough-pw-1"


def link_in(body: str, path: str) -> str:
    match = re.search(rf"https?://[^/\s]+({re.escape(path)}\S+)", str(body))
    assert match, body
    return match.group(1)


def sign_up(client, username="sam", email="sam@example.com"):
    return client.post("/accounts/signup/", {"email": email, "username": username, "password1": PASSWORD,
                                             "password2": PASSWORD})


def logged_in(client) -> bool:
    return client.get("/").status_code == 200


def test_sign_up_verify_log_out_and_log_in(client):
    response = sign_up(client)
    assert response.status_code == 302 and response["Location"] == "/accounts/confirm-email/"
    user = get_user_model().objects.get(username="sam")
    member = AccountMember.objects.get(user=user)                  # an account of their own, which they own
    assert member.role == MemberRole.OWNER and member.account.name == "sam"
    assert not logged_in(client)

    # Not verified yet: logging in does not log in (it resends the verification, at most every few minutes).
    assert client.post("/accounts/login/", {"login": "sam", "password": PASSWORD}).status_code == 302
    assert not logged_in(client)
    assert len(mail.outbox) >= 1 and mail.outbox[0].to == ["sam@example.com"]

    confirm = link_in(str(mail.outbox[-1].body), "/accounts/confirm-email/")
    assert client.get(confirm).status_code == 200
    response = client.post(confirm)
    assert response.status_code == 302
    assert logged_in(client)

    assert client.post("/accounts/logout/").status_code == 302
    assert not logged_in(client)
    response = client.post("/accounts/login/", {"login": "sam@example.com", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert logged_in(client)


def test_a_user_the_operator_made_logs_in_without_an_email(client):
    get_user_model().objects.create_user(username="ops-made", password=PASSWORD)
    response = client.post("/accounts/login/", {"login": "ops-made", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert logged_in(client)


def test_password_reset(client):
    user = get_user_model().objects.create_user(username="pat", email="pat@example.com", password="old-pw-123456")
    response = client.post("/accounts/password/reset/", {"email": "pat@example.com"})
    assert response.status_code == 302
    reset = link_in(str(mail.outbox[-1].body), "/accounts/password/reset/key/")
    form = client.get(reset, follow=True)
    assert form.status_code == 200
    action = form.redirect_chain[-1][0] if form.redirect_chain else reset
    response = client.post(action, {"password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_the_operator_closes_sign_up(client, settings):
    assert "/accounts/signup/" in client.get("/accounts/login/").content.decode()
    settings.CREDITGATE_SIGNUP_OPEN = False
    page = client.get("/accounts/signup/")
    assert "closed" in page.content.decode().lower()
    assert "/accounts/signup/" not in client.get("/accounts/login/").content.decode()
    sign_up(client)
    assert not get_user_model().objects.filter(username="sam").exists()
    assert not mail.outbox


def test_account_emails_go_through_resend_to_the_sandbox(client, sandbox, settings):
    from creditgate.catalog.models import IntegrationProvider

    IntegrationProvider.objects.get_or_create(provider_id="resend", defaults={"display_name": "Resend"})
    settings.EMAIL_BACKEND = "creditgate.providers.mail.ResendEmailBackend"
    sign_up(client, "rae", "rae@example.com")
    sent = sandbox.requests("resend.emails")
    assert len(sent) == 1
    assert sent[0]["to"] == ["rae@example.com"] and "/accounts/confirm-email/" in sent[0]["text"]


def test_a_signed_up_user_joins_through_an_invitation(client, settings):
    settings.CREDITGATE_PUBLIC_URL = "http://testserver"
    from creditgate.credits import team

    owner = get_user_model().objects.create_user(username="olivia")
    _, link, _ = team.invitation_create(actor=owner, email="sam@example.com", monthly_cap=20)
    join = link.removeprefix("http://testserver")
    page = client.get(join).content.decode()
    found = re.search(r'href="(/accounts/signup/\?next=[^"]+)"', page)
    assert found
    signup = found.group(1)
    response = client.post(signup.replace("&amp;", "&"), {"email": "sam@example.com", "username": "sam",
                                                          "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    confirm = link_in(str(mail.outbox[-1].body), "/accounts/confirm-email/")
    response = client.post(confirm)
    assert response.status_code == 302 and response["Location"] == join    # back to the invitation
    response = client.post(join)
    assert response.status_code == 302
    sam = get_user_model().objects.get(username="sam")
    member = AccountMember.objects.get(user=sam)
    assert member.account == services.account_for_user(user=owner) and member.monthly_cap == 20
