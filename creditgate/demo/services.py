"""Writes the demo needs: a known login (its credits are the credits app's: the demo command asks
credits.services for them)."""

from __future__ import annotations

from django.contrib.auth import get_user_model


def demo_login_ensure(*, username: str, password: str) -> tuple[object, bool]:
    """Create (or repair) the demo login: (user, created). The password is printed for the user
    to type, so it must be the one that works."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(username=username)
    if created or not user.check_password(password) or not user.is_active:
        user.set_password(password)
        user.is_active = True
        user.save()
    return user, created
