"""Operator tools: the management commands and the admin."""

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from creditgate.credits import selectors, services
from creditgate.credits.models import Account, Hold, LedgerEntry

from .conftest import make_user, snapshot

pytestmark = pytest.mark.django_db


def test_grant_credits_command(capsys):
    user = make_user("carol")
    call_command("grant_credits", "carol", "50", "--reason", "welcome")
    assert "balance 50" in capsys.readouterr().out
    entry = LedgerEntry.objects.get(account=services.account_for_user(user=user))
    assert (entry.kind, entry.amount, entry.reason) == ("grant", 50, "welcome")


@pytest.mark.parametrize("args", [["nobody", "5"], ["alice", "0"], ["alice", "-3"]])
def test_grant_credits_refuses_bad_input_and_changes_nothing(account, args):
    before = snapshot(account)
    with pytest.raises(CommandError):
        call_command("grant_credits", *args)
    assert snapshot(account) == before


def test_check_ledger_clean_then_exit_1_on_a_corrupted_counter(account, capsys):
    call_command("check_ledger")
    assert "Ledger OK" in capsys.readouterr().out
    Account.objects.filter(pk=account.pk).update(available=account.available + 3)
    with pytest.raises(SystemExit) as exc:
        call_command("check_ledger")
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and f"account {account.pk}" in out and "available is 103 but the ledger sums to 100" in out


def test_stale_holds_are_released_once(account):
    # The command and the beat task that run this live in generation (they also finish the jobs).
    for key in ("a", "b"):
        services.hold_place(account=account, amount=5, idempotency_key=key, fingerprint="f")
    Hold.objects.update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    assert services.holds_release_stale() == 2
    assert services.holds_release_stale() == 0
    assert selectors.balance_get(account=account) == {"balance": 100, "held": 0, "available": 100}


@pytest.fixture
def admin_client(client):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", "root@example.com", None)
    client.force_login(admin)
    client.admin = admin
    return client


def test_admin_grant_records_the_admin_as_actor(admin_client, account):
    url = f"/admin/credits/account/{account.pk}/grant/"
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"kind": "grant", "amount": "40", "reason": "support ticket 12"})
    assert response.status_code == 302
    entry = LedgerEntry.objects.filter(account=account).first()
    assert entry is not None
    assert (entry.amount, entry.actor, entry.reason) == (40, admin_client.admin, "support ticket 12")
    assert selectors.balance_get(account=account)["available"] == 140


def test_admin_adjustment_below_available_is_refused(admin_client, account):
    before = snapshot(account)
    response = admin_client.post(f"/admin/credits/account/{account.pk}/grant/",
                                 {"kind": "adjustment", "amount": "-500", "reason": "oops"})
    assert response.status_code == 200 and b"only 100 are available" in response.content
    assert snapshot(account) == before


def test_admin_pages_show_balances_and_keep_the_ledger_read_only(admin_client, account):
    page = admin_client.get(f"/admin/credits/account/{account.pk}/change/")
    assert page.status_code == 200 and b"Grant or adjust credits" in page.content
    assert admin_client.get("/admin/credits/account/").status_code == 200
    assert admin_client.get("/admin/credits/ledgerentry/").status_code == 200
    assert admin_client.get("/admin/credits/hold/").status_code == 200
    entry = LedgerEntry.objects.filter(account=account).first()
    assert entry is not None
    assert admin_client.get("/admin/credits/ledgerentry/add/").status_code == 403
    assert admin_client.post(f"/admin/credits/ledgerentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    # The change page renders read-only: posting to it changes nothing.
    admin_client.post(f"/admin/credits/ledgerentry/{entry.pk}/change/", {"amount": "999"})
    entry.refresh_from_db()
    assert entry.amount == 100
    # Counters cannot be edited through the account form either.
    admin_client.post(f"/admin/credits/account/{account.pk}/change/",
                      {"name": "x", "available": "999", "members-TOTAL_FORMS": "0", "members-INITIAL_FORMS": "0"})
    assert selectors.balance_get(account=account)["available"] == 100
