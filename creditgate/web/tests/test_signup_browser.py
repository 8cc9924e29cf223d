"""Accounts and teams in a real browser, with the emails read where the demo has them (the Resend
sandbox): a new user signs up, verifies, logs out and in; an owner invites by email from the Team
page, the invitee signs up from the link, verifies, joins, and sees the team with the cap the owner
set, generates within it on the team's credits; the owner sees them join and what they used."""

from __future__ import annotations

import re

import pytest

from creditgate.catalog.models import IntegrationProvider
from creditgate.credits import services as credits_services
from creditgate.credits.models import AccountMember, Hold, Invitation

from .test_page_browser import ai_config, expect, generate, log_in, make_user, page_env  # noqa: F401 - page_env: fixture

pytestmark = pytest.mark.browser

PASSWORD = "a-long-enough-pw-1"


@pytest.fixture
def mail_env(page_env, sandbox, settings):  # noqa: F811 - page_env: the fixture imported above
    """Emails through Resend's sandbox, as in the demo; links point at the live server."""
    IntegrationProvider.objects.get_or_create(provider_id="resend", defaults={"display_name": "Resend"})
    settings.EMAIL_BACKEND = "creditgate.providers.mail.ResendEmailBackend"
    settings.CREDITGATE_PUBLIC_URL = page_env.url
    return page_env


def emailed_link(sandbox, to: str, path: str) -> str:
    bodies = [e for e in sandbox.requests("resend.emails") if to in e["to"]]
    assert bodies, f"no email to {to} in the sandbox"
    match = re.search(rf"https?://\S+{re.escape(path)}\S*", bodies[-1]["text"])
    assert match, bodies[-1]["text"]
    return match.group(0)


def sign_up(page, *, username: str, email: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Username").fill(username)
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    expect(page.get_by_role("heading", name="Verify Your Email Address")).to_be_visible()


def verify(page, sandbox, email: str) -> None:
    page.goto(emailed_link(sandbox, email, "/accounts/confirm-email/"))
    page.get_by_role("button", name="Confirm").click()


def test_sign_up_verify_then_log_out_and_in(mail_env, sandbox, page):
    page.goto(mail_env.url + "/")
    page.get_by_role("link", name="Sign up").click()
    sign_up(page, username="sam", email="sam@example.com")
    verify(page, sandbox, "sam@example.com")
    page.wait_for_selector('#app[data-ready="true"]')                  # logged in, on the generator
    member = AccountMember.objects.get(user__username="sam")
    assert member.is_owner and member.account.name == "sam"

    page.get_by_role("button", name="Log out").click()
    page.goto(mail_env.url + "/")
    page.get_by_label("Username").fill("sam@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector('#app[data-ready="true"]')


def test_an_owner_invites_and_the_invitee_signs_up_joins_and_sees_the_team(mail_env, sandbox, page, browser):
    owner = make_user("olivia", 500)
    basic = min(ai_config()["image_qualities"], key=lambda q: q["credits_per_image"])
    log_in(page, mail_env, owner)
    page.goto(mail_env.url + "/team/")
    page.wait_for_selector('#team[data-ready="true"]')
    page.get_by_label("Email").fill("nia@example.com")
    page.get_by_label("Role").select_option("member")
    page.get_by_label("Cap for the new member (credits a month, optional)").fill("25")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.locator('tr[data-invitation="nia@example.com"]')).to_contain_text("25 credits")
    link = emailed_link(sandbox, "nia@example.com", "/team/join/")

    invitee = browser.new_context(viewport={"width": 1280, "height": 900})
    nia = invitee.new_page()
    try:
        nia.goto(link)
        expect(nia.get_by_role("heading", name="Join “olivia”")).to_be_visible()
        expect(nia.locator("main")).to_contain_text("with a monthly cap of 25 credits")
        nia.get_by_role("link", name="Sign up").click()
        sign_up(nia, username="nia", email="nia@example.com")
        verify(nia, sandbox, "nia@example.com")
        nia.get_by_role("button", name="Join olivia").click()           # back on the invitation, logged in
        nia.wait_for_selector('#team[data-ready="true"]')
        expect(nia.locator('tr[data-member="nia"]')).to_contain_text("25 credits")
        expect(nia.locator('tr[data-member="nia"]')).to_contain_text("Member")
        expect(nia.get_by_role("button", name="Leave this team")).to_be_visible()

        # She generates within her cap, on the team's credits.
        nia.get_by_role("link", name="Generate").click()
        nia.wait_for_selector('#app[data-ready="true"]')
        generate(nia, tier=basic, count=1, prompt="a harbour at dawn")
        expect(nia.locator("#image-job-summary")).to_have_text(re.compile(r"^Delivered 1 image"), timeout=30_000)
    finally:
        invitee.close()

    member = AccountMember.objects.get(user__username="nia")
    assert member.account == credits_services.account_for_user(user=owner) and member.monthly_cap == 25
    assert Invitation.objects.get().accepted_at is not None
    hold = Hold.objects.get(user__username="nia")
    assert hold.account == member.account and hold.state == "captured"
    assert hold.captured_amount == basic["credits_per_image"]
    page.reload()
    page.wait_for_selector('#team[data-ready="true"]')
    expect(page.locator('tr[data-member="nia"]')).to_contain_text(f"{basic['credits_per_image']} of 25")
    expect(page.locator("#invites-empty")).to_be_visible()
