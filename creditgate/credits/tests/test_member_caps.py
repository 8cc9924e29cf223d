"""Members' monthly caps and API keys' caps, enforced in the hold's own statements: what a
refusal says and leaves unchanged, how settling moves spending, the calendar month, the audit."""

import datetime as dt

import pytest
from django.core.management import call_command
from django.utils import timezone

from creditgate.core.errors import ApiKeyCapExceeded, InsufficientCredits, MemberCapExceeded, PermissionDenied
from creditgate.credits import selectors, services
from creditgate.credits.models import ApiKeySpend, Hold, MemberRole, MemberSpend
from creditgate.credits.tests.factories import make_team

from .conftest import make_user, snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    """An owner with 100 credits and a writer in the owner's account."""
    return make_team(credits=100)


def member(user):
    return services.member_for_user(user=user)


def place(account, user, amount, key, api_key=None):
    return services.hold_place(account=account, amount=amount, idempotency_key=key, fingerprint="f", user=user,
                               api_key=api_key)[0]


def spend(account, user) -> tuple[int, int]:
    row = MemberSpend.objects.filter(account=account, user=user, month=selectors.spending_month()).first()
    return (row.held, row.spent) if row else (0, 0)


def test_a_new_account_is_owned_by_its_user_and_an_added_user_is_a_member(team):
    owner, writer, account = team
    assert member(owner).role == MemberRole.OWNER
    assert member(writer).role == MemberRole.MEMBER
    assert member(writer).account_id == account.pk


def test_a_hold_over_the_members_cap_is_refused_with_the_numbers_and_changes_nothing(team):
    owner, writer, account = team
    services.member_update(actor=owner, member=member(writer), monthly_cap=20)
    first = place(account, writer, 12, "a")
    services.hold_capture(hold_id=first.pk, amount=8)   # spent 8
    place(account, writer, 5, "b")                      # held 5: 13 used
    before = snapshot(account)
    with pytest.raises(MemberCapExceeded) as refused:
        place(account, writer, 8, "c")                  # 13 + 8 > 20
    assert refused.value.status_code == 402 and refused.value.code == "member_cap_exceeded"
    assert refused.value.details == {"cap": 20, "spent": 8, "held": 5, "required": 8,
                                     "month": selectors.spending_month().strftime("%Y-%m")}
    assert "20" in refused.value.message and "13" in refused.value.message
    assert snapshot(account) == before
    assert not Hold.objects.filter(idempotency_key="c").exists()
    assert spend(account, writer) == (5, 8)
    place(account, writer, 7, "d")                      # exactly up to the cap is fine
    assert spend(account, writer) == (12, 8)
    assert selectors.ledger_check() == []


def test_the_cap_counts_the_member_only_and_the_account_rule_still_applies(team):
    owner, writer, account = team
    services.member_update(actor=owner, member=member(writer), monthly_cap=5)
    with pytest.raises(MemberCapExceeded):
        place(account, writer, 6, "w-1")
    place(account, owner, 96, "owner-1")                # the owner has no cap
    with pytest.raises(InsufficientCredits):            # within the writer's cap, but the account is short
        place(account, writer, 5, "w-2")
    assert spend(account, owner) == (96, 0) and spend(account, writer) == (0, 0)


def test_released_and_expired_holds_give_the_cap_back_and_captures_count_as_spent(team):
    owner, writer, account = team
    services.member_update(actor=owner, member=member(writer), monthly_cap=10)
    a, b = place(account, writer, 4, "a"), place(account, writer, 6, "b")
    with pytest.raises(MemberCapExceeded):
        place(account, writer, 1, "c")
    services.hold_release(hold_id=a.pk)
    services.hold_capture(hold_id=b.pk, amount=6)
    assert spend(account, writer) == (0, 6)
    expiring = services.hold_place(account=account, amount=4, idempotency_key="e", fingerprint="f", user=writer)[0]
    assert services.holds_release_stale(now=timezone.now() + dt.timedelta(days=1)) == 1
    assert Hold.objects.get(pk=expiring.pk).state == "expired"
    assert spend(account, writer) == (0, 6)
    place(account, writer, 4, "f")
    assert spend(account, writer) == (4, 6)
    assert selectors.ledger_check() == []


def test_a_replayed_key_at_the_cap_returns_the_first_hold(team):
    owner, writer, account = team
    services.member_update(actor=owner, member=member(writer), monthly_cap=3)
    first = place(account, writer, 3, "same")
    again, created = services.hold_place(account=account, amount=3, idempotency_key="same", fingerprint="f",
                                         user=writer)
    assert (again.pk, created) == (first.pk, False)
    assert spend(account, writer) == (3, 0)


def test_removing_or_raising_a_cap_applies_to_the_next_hold(team):
    owner, writer, account = team
    services.member_update(actor=owner, member=member(writer), monthly_cap=0)
    with pytest.raises(MemberCapExceeded) as refused:
        place(account, writer, 1, "a")
    assert refused.value.details["cap"] == 0
    services.member_update(actor=owner, member=member(writer), monthly_cap=None)
    place(account, writer, 50, "b")


def test_a_month_is_a_calendar_month_in_the_configured_time_zone(settings):
    at = dt.datetime(2026, 3, 31, 23, 30, tzinfo=dt.UTC)
    settings.CREDITGATE_SPENDING_TIME_ZONE = "UTC"
    assert selectors.spending_month(at=at) == dt.date(2026, 3, 1)
    settings.CREDITGATE_SPENDING_TIME_ZONE = "Europe/Berlin"   # already April 1st, 01:30 there
    assert selectors.spending_month(at=at) == dt.date(2026, 4, 1)
    settings.CREDITGATE_SPENDING_TIME_ZONE = "America/New_York"
    assert selectors.spending_month(at=dt.datetime(2026, 4, 1, 3, 0, tzinfo=dt.UTC)) == dt.date(2026, 3, 1)


def test_last_months_spending_does_not_count_against_this_month(team):
    owner, writer, account = team
    services.member_update(actor=owner, member=member(writer), monthly_cap=10)
    last_month = selectors.spending_month() - dt.timedelta(days=1)
    MemberSpend.objects.create(account=account, user=writer, month=last_month.replace(day=1), spent=0, held=0)
    old = place(account, writer, 10, "old")
    # As if placed last month: the hold and its row move back a month (settling follows the hold's month).
    Hold.objects.filter(pk=old.pk).update(spend_month=last_month.replace(day=1))
    MemberSpend.objects.filter(account=account, user=writer, month=selectors.spending_month()).update(held=0)
    MemberSpend.objects.filter(account=account, user=writer, month=last_month.replace(day=1)).update(held=10)
    place(account, writer, 10, "new")                   # this month starts from zero
    services.hold_capture(hold_id=old.pk, amount=10)
    assert MemberSpend.objects.get(account=account, user=writer, month=last_month.replace(day=1)).spent == 10
    assert spend(account, writer) == (10, 0)
    assert selectors.ledger_check() == []


def test_an_api_keys_cap_is_checked_besides_the_members(team):
    owner, writer, account = team
    services.member_update(actor=owner, member=member(writer), monthly_cap=50)
    key, _ = services.api_key_create(actor=owner, member=member(writer), name="CMS plugin", monthly_cap=5)
    place(account, writer, 5, "k1", api_key=key)
    with pytest.raises(ApiKeyCapExceeded) as refused:
        place(account, writer, 1, "k2", api_key=key)
    assert refused.value.code == "api_key_cap_exceeded"
    assert refused.value.details["cap"] == 5 and refused.value.details["held"] == 5
    place(account, writer, 40, "no-key")                # the member's own budget is still there
    with pytest.raises(MemberCapExceeded):
        place(account, writer, 6, "no-key-2")
    assert ApiKeySpend.objects.get(api_key=key).held == 5
    assert spend(account, writer) == (45, 0)
    assert selectors.ledger_check() == []


def test_only_an_owner_sets_caps_and_the_last_owner_stays_one(team):
    owner, writer, _account = team
    with pytest.raises(PermissionDenied):
        services.member_update(actor=writer, member=member(writer), monthly_cap=None)
    with pytest.raises(services.InvalidRequest):
        services.member_update(actor=owner, member=member(owner), role=MemberRole.MEMBER)
    services.member_update(actor=owner, member=member(writer), role=MemberRole.OWNER)
    services.member_update(actor=writer, member=member(owner), role=MemberRole.MEMBER)
    assert member(owner).role == MemberRole.MEMBER and member(writer).role == MemberRole.OWNER
    outsider = make_user("outsider")
    with pytest.raises(PermissionDenied):
        services.member_update(actor=outsider, member=member(writer), monthly_cap=1)


def test_a_bad_cap_is_a_400(team):
    owner, writer, _ = team
    for bad in (-1, 1.5, "10", True, 10**13):
        with pytest.raises(services.InvalidRequest):
            services.member_update(actor=owner, member=member(writer), monthly_cap=bad)
    assert member(writer).monthly_cap is None


def test_the_audit_finds_spending_rows_that_disagree_with_the_holds(team, capsys):
    _owner, writer, account = team
    place(account, writer, 4, "a")
    MemberSpend.objects.filter(account=account, user=writer).update(held=3)
    problems = selectors.ledger_check()
    assert any("member spending" in p and "held 3" in p and "held 4" in p for p in problems)
    with pytest.raises(SystemExit):
        call_command("check_ledger")
    MemberSpend.objects.filter(account=account, user=writer).delete()
    assert any("no row" in p for p in selectors.ledger_check())
