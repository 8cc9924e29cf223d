"""`manage.py demo --no-serve`: the login it prints works, and credits are granted only once."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from creditgate.credits import selectors as credits_selectors
from creditgate.credits import services as credits_services
from creditgate.demo.management.commands.demo import DEMO_CREDITS, DEMO_PASSWORD, DEMO_USERNAME

pytestmark = pytest.mark.django_db


def run_demo(*args) -> str:
    out = StringIO()
    call_command("demo", "--no-serve", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def demo_balance() -> dict:
    user = get_user_model().objects.get(username=DEMO_USERNAME)
    return credits_selectors.balance_get(account=credits_services.account_for_user(user=user))


def test_demo_prints_a_login_that_works_and_grants_credits():
    output = run_demo()
    assert "http://127.0.0.1:8000/" in output
    assert DEMO_USERNAME in output and DEMO_PASSWORD in output
    assert Client().login(username=DEMO_USERNAME, password=DEMO_PASSWORD)
    assert demo_balance() == {"balance": DEMO_CREDITS, "held": 0, "available": DEMO_CREDITS}


def test_demo_grants_only_once_and_never_tops_up_what_was_spent():
    run_demo()
    user_account = credits_services.account_for_user(user=get_user_model().objects.get(username=DEMO_USERNAME))
    credits_services.credits_grant(account=user_account, amount=-7, kind="adjustment", reason="spent trying it")

    output = run_demo()

    assert demo_balance()["available"] == DEMO_CREDITS - 7
    assert "already granted" in output
    assert credits_selectors.ledger_list(account=user_account).filter(kind="grant").count() == 1


def test_demo_repairs_a_changed_password_and_uses_the_port_option():
    run_demo()
    user = get_user_model().objects.get(username=DEMO_USERNAME)
    user.set_password("something-else-1")
    user.save()

    output = run_demo("--port", "8123")

    assert "http://127.0.0.1:8123/" in output
    assert Client().login(username=DEMO_USERNAME, password=DEMO_PASSWORD)


def test_demo_public_url_follows_the_port_and_webhooks_may_go_to_loopback(settings, monkeypatch):
    from creditgate.demo.management.commands.demo import demo_settings
    from creditgate.webhooks import egress

    monkeypatch.delenv("CREDITGATE_PUBLIC_URL", raising=False)
    settings.DEBUG = True
    for name, value in demo_settings(port=8123).items():
        setattr(settings, name, value)
    assert settings.CREDITGATE_PUBLIC_URL == "http://127.0.0.1:8123"
    assert egress.address_refusal("127.0.0.1") is None
    assert egress.address_refusal("::1") is None
    assert egress.address_refusal("10.0.0.1") is not None  # loopback only


def test_demo_never_opens_loopback_without_debug_and_keeps_a_set_public_url(settings, monkeypatch):
    from creditgate.demo.management.commands.demo import demo_settings

    monkeypatch.setenv("CREDITGATE_PUBLIC_URL", "https://credits.example")
    settings.DEBUG = False
    assert demo_settings(port=8123) == {}
