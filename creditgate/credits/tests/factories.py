"""The tests' one way to make a user: a login with its own account, optionally with credits
granted through the ledger. Every app's tests import it (with their own defaults, by partial)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from creditgate.credits import services


def make_user(username: str = "alice", credits: int = 0, *, email: str | None = None, password: str | None = None,
              reason: str = "test"):
    """A user (no password unless given: hashing one costs time) whose account holds `credits`."""
    user = get_user_model().objects.create_user(username=username, email=email or f"{username}@example.com",
                                                password=password)
    if credits:
        services.credits_grant(account=services.account_for_user(user=user), amount=credits, reason=reason)
    return user


def make_team(credits: int = 100):
    """(owner, writer, account): an owner whose account holds `credits`, and a writer in it."""
    owner = make_user("owner", credits=credits)
    account = services.account_for_user(user=owner)
    writer = make_user("writer")
    services.account_member_add(account=account, user=writer)
    return owner, writer, account
