"""The admin's add-member path: an existing user (who, like every user, has an account of their
own) is added to another account from the account's page, with a role and a cap; their own account
is kept. It used to fail with "Member with this User already exists"."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from creditgate.credits import services
from creditgate.credits.models import AccountMember, MemberRole

from .conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    admin = get_user_model().objects.create_superuser(username="admin", password="pw-admin-12345")
    client.force_login(admin)
    return client


def test_an_operator_adds_an_existing_user_to_an_account(staff_client):
    owner = make_user("olivia")
    account = services.account_for_user(user=owner)
    bob = make_user("bob", credits=4)
    own = services.account_for_user(user=bob)

    page = staff_client.get(f"/admin/credits/account/{account.pk}/change/")
    assert page.status_code == 200 and "Add a member" in page.content.decode()
    form = staff_client.get(f"/admin/credits/account/{account.pk}/add-member/")
    assert form.status_code == 200
    response = staff_client.post(f"/admin/credits/account/{account.pk}/add-member/",
                                 {"user": "bob", "role": "member", "monthly_cap": "30"})
    assert response.status_code == 302, response.content.decode()[:2000]
    member = AccountMember.objects.get(user=bob)
    assert (member.account, member.role, member.monthly_cap, member.home_account) == (
        account, MemberRole.MEMBER, 30, own)
    own.refresh_from_db()
    assert own.available == 4

    # The account's page still saves, a member's cap with it (their user and role are read-only there).
    page = staff_client.get(f"/admin/credits/account/{account.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200 and "bob" in html
    data = dict(re.findall(r'<input[^>]*?name="([^"]+)"[^>]*?value="([^"]*)"', html))
    data = {k: v for k, v in data.items() if k != "csrfmiddlewaretoken"}
    bob_row = next(k for k, v in data.items() if k.endswith("-id") and v == str(member.pk)).removesuffix("-id")
    data[f"{bob_row}-monthly_cap"] = "12"
    response = staff_client.post(f"/admin/credits/account/{account.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    member.refresh_from_db()
    assert (member.monthly_cap, member.account, member.role) == (12, account, MemberRole.MEMBER)


def test_the_admin_refuses_what_the_rules_refuse_and_says_why(staff_client):
    account = services.account_for_user(user=make_user("olivia"))
    other = services.account_for_user(user=make_user("oscar"))
    services.account_member_add(account=other, user=make_user("helper"))
    response = staff_client.post(f"/admin/credits/account/{account.pk}/add-member/",
                                 {"user": "oscar", "role": "member", "monthly_cap": ""})
    assert response.status_code == 200 and "other members" in response.content.decode()
    assert AccountMember.objects.get(user__username="oscar").account == other
    response = staff_client.post(f"/admin/credits/account/{account.pk}/add-member/",
                                 {"user": "nobody", "role": "member", "monthly_cap": ""})
    assert response.status_code == 200 and "No user with this username or email" in response.content.decode()
