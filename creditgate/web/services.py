"""Writes the demo needs: a known user whose account starts with credits."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model

from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.credits.models import EntryKind


@dataclass(frozen=True)
class DemoUser:
    user: object
    created: bool
    credits_granted: int
    available: int


def demo_user_ensure(*, username: str, password: str, credits: int) -> DemoUser:
    """Create (or repair) the demo login and grant its account `credits` once.

    Granting only when the account has never had a grant keeps the command idempotent: running
    the demo again neither piles up credits nor tops up what the user spent trying it.
    """
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    # The password is printed for the user to type, so it must be the one that works.
    if created or not user.check_password(password) or not user.is_active:
        user.set_password(password)
        user.is_active = True
        user.save()
    account = credits_services.account_for_user(user=user)
    granted = 0
    if not credits_selectors.ledger_list(account=account).filter(kind=EntryKind.GRANT).exists():
        credits_services.credits_grant(account=account, amount=credits, reason="demo grant")
        granted = credits
    available = credits_selectors.balance_get(account=account)["available"]
    return DemoUser(user=user, created=created, credits_granted=granted, available=available)
