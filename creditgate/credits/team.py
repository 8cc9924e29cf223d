"""Teams: invitations by email, joining, leaving, removing a member, handing over ownership.

One account per user (`AccountMember.user` is one-to-one). Joining a team moves the user's
membership; the account they were alone in (their own, with its credits, ledger and jobs) is not
touched and is kept in `AccountMember.home_account`, and it is theirs again when they leave or
are removed. So no credit and no line of history is ever lost by joining or leaving:

- a user may join when their current account has no other member (it becomes their home) ;
- a user who is in someone else's team (their membership has a home) must leave it first;
- an owner whose account has other members must remove them or hand the account over first;
- the account always keeps an owner: the last owner can neither leave nor be demoted nor be removed.

Running jobs of a member who leaves or is removed still settle: a hold belongs to the account and
the user it was placed for (and their month's spending row in that account), not to the membership.
The member's API keys are revoked when the membership moves (a key acts as its member, who now
belongs elsewhere).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from creditgate.core.errors import InvalidRequest, NotFound, PermissionDenied
from creditgate.credits import services
from creditgate.credits.models import Account, AccountMember, ApiKey, Invitation, InvitationState, MemberRole

logger = logging.getLogger(__name__)


def _role_clean(role) -> str:
    if role not in MemberRole.values:
        raise InvalidRequest("Unknown role.", details={"role": [f"Must be one of {', '.join(MemberRole.values)}."]})
    return role


def _lock_account(account_id: int) -> None:
    # The account's row lock orders every membership change of the account (joins, leaves,
    # removals, role changes), so two concurrent changes cannot leave it without an owner.
    Account.objects.select_for_update().filter(pk=account_id).first()


def _is_last_owner(member: AccountMember) -> bool:
    return member.is_owner and not AccountMember.objects.filter(
        account_id=member.account_id, role=MemberRole.OWNER).exclude(pk=member.pk).exists()


def _keys_revoke(member: AccountMember) -> None:
    ApiKey.objects.filter(member=member, revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- Joining and leaving ------------------------------------------------------------------------


def member_join(*, user, account: Account, role: str = MemberRole.MEMBER,
                monthly_cap: int | None = None) -> AccountMember:
    """Move `user` into `account` with `role` and `monthly_cap` (see the module's rules)."""
    role = _role_clean(role)
    cap = services._cap_clean(monthly_cap)
    with transaction.atomic():
        current = AccountMember.objects.select_for_update().filter(user=user).first()
        if current is None:
            member = AccountMember.objects.create(account=account, user=user, role=role, monthly_cap=cap)
            user.credit_membership = member
            return member
        if current.account_id == account.pk:
            raise InvalidRequest(f"{user} is already a member of this account.", code="already_member",
                                 details={"user": ["Already a member of this account."]})
        for account_id in sorted([current.account_id, account.pk]):  # one order: no deadlock between two joins
            _lock_account(account_id)
        if current.home_account_id is not None:
            raise InvalidRequest(
                f"{user} is a member of the team “{current.account}”: leave it first (your own account is kept "
                f"and given back when you leave).", code="leave_team_first",
                details={"user": ["Already in another team."]})
        if AccountMember.objects.filter(account_id=current.account_id).exclude(pk=current.pk).exists():
            raise InvalidRequest(
                f"{user}'s account “{current.account}” has other members: remove them, or make one of them "
                f"the owner and leave, first.", code="account_has_members",
                details={"user": ["Their current account has other members."]})
        _keys_revoke(current)
        current.home_account_id = current.account_id
        current.account, current.role, current.monthly_cap = account, role, cap
        current.joined_at = timezone.now()
        current.save(update_fields=["account", "home_account", "role", "monthly_cap", "joined_at"])
        user.credit_membership = current  # account_for_user trusts a membership loaded with the user
        logger.info("member joined", extra={"account_id": account.pk, "user_id": user.pk, "role": role})
        return current


def _go_home(member: AccountMember) -> AccountMember:
    """Move the member back to their own account (a new empty one if they never had one)."""
    _keys_revoke(member)
    home_id = member.home_account_id
    if home_id is None:
        home_id = Account.objects.create(name=member.user.get_username()).pk
    member.account_id, member.home_account_id = home_id, None
    member.role, member.monthly_cap, member.joined_at = MemberRole.OWNER, None, timezone.now()
    member.save(update_fields=["account", "home_account", "role", "monthly_cap", "joined_at"])
    member.user.credit_membership = member
    return member


def member_leave(*, user) -> AccountMember:
    """The user leaves the team they are in and is back in their own account."""
    with transaction.atomic():
        member = AccountMember.objects.select_for_update().select_related("user").filter(user=user).first()
        if member is None:
            raise InvalidRequest("You are not a member of any account.", code="not_a_member")
        _lock_account(member.account_id)
        if not AccountMember.objects.filter(account_id=member.account_id).exclude(pk=member.pk).exists():
            raise InvalidRequest("This is your own account and you are its only member: there is no team to "
                                 "leave.", code="nothing_to_leave")
        if _is_last_owner(member):
            raise InvalidRequest("The account must keep an owner: make another member the owner first.",
                                 code="last_owner", details={"role": ["You are the account's last owner."]})
        old_account_id = member.account_id
        member = _go_home(member)
        user.credit_membership = member  # the caller's user object: account_for_user trusts it
        logger.info("member left", extra={"account_id": old_account_id, "user_id": user.pk})
        return member


def member_remove(*, actor, member: AccountMember) -> AccountMember:
    """An owner removes another member from the account; the member is back in their own account.
    Their running jobs still settle; their API keys are revoked."""
    actor_member = services.member_for_user(user=actor)
    if actor_member.pk == member.pk:
        raise InvalidRequest("To leave the account yourself, use leave.", code="remove_yourself",
                             details={"member": ["That is you: leave instead."]})
    if actor_member.account_id != member.account_id or not actor_member.is_owner:
        raise PermissionDenied("Only an owner of the account can remove members.")
    with transaction.atomic():
        _lock_account(member.account_id)
        member = AccountMember.objects.select_for_update().select_related("user").get(pk=member.pk)
        actor_member = AccountMember.objects.get(pk=actor_member.pk)
        if member.account_id != actor_member.account_id or not actor_member.is_owner:
            raise PermissionDenied("Only an owner of the account can remove members.")
        old_account_id = member.account_id
        member = _go_home(member)
        logger.info("member removed", extra={"account_id": old_account_id, "user_id": member.user_id,
                                             "by": actor.pk})
        return member


def ownership_transfer(*, actor, member: AccountMember) -> AccountMember:
    """An owner makes `member` the owner and becomes a member (the account keeps one owner more
    only if it had several)."""
    actor_member = services.member_for_user(user=actor)
    if actor_member.pk == member.pk:
        raise InvalidRequest("You already own the account.", code="already_owner",
                             details={"member": ["That is you."]})
    if actor_member.account_id != member.account_id or not actor_member.is_owner:
        raise PermissionDenied("Only an owner of the account can hand it over.")
    with transaction.atomic():
        _lock_account(member.account_id)
        actor_member = AccountMember.objects.select_for_update().get(pk=actor_member.pk)
        member = AccountMember.objects.select_for_update().select_related("user").get(pk=member.pk)
        if actor_member.account_id != member.account_id or not actor_member.is_owner:
            raise PermissionDenied("Only an owner of the account can hand it over.")
        member.role, member.monthly_cap = MemberRole.OWNER, None
        member.save(update_fields=["role", "monthly_cap"])
        actor_member.role = MemberRole.MEMBER
        actor_member.save(update_fields=["role"])
        actor.credit_membership = actor_member
        return member


# --- Invitations --------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _email_clean(email) -> str:
    if not isinstance(email, str):
        email = ""
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidRequest("Enter a valid email address.", details={"email": ["Enter a valid email address."]}
                             ) from None
    local, _, domain = email.rpartition("@")
    return f"{local}@{domain.lower()}"


def invitation_link(token: str) -> str:
    return settings.CREDITGATE_PUBLIC_URL + reverse("team-join", kwargs={"token": token})


def invitation_lifetime() -> dt.timedelta:
    return dt.timedelta(days=settings.CREDITGATE_INVITATION_DAYS)


def invitation_create(*, actor, email, role: str = MemberRole.MEMBER, monthly_cap: int | None = None
                      ) -> tuple[Invitation, str, bool]:
    """An owner invites `email` with a role and a monthly cap: (the invitation, the link, whether
    the email was sent). A new invitation to the same address replaces a pending one. The link is
    returned too (once), so an owner can hand it over another way if the email does not arrive."""
    actor_member = services.owner_check(user=actor, what="invite people")
    email = _email_clean(email)
    role = _role_clean(role)
    cap = services._cap_clean(monthly_cap)
    if AccountMember.objects.filter(account_id=actor_member.account_id, user__email__iexact=email).exists():
        raise InvalidRequest(f"{email} is already a member of this account.", code="already_member",
                             details={"email": ["Already a member of this account."]})
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.filter(account_id=actor_member.account_id, email__iexact=email, accepted_at__isnull=True,
                                  revoked_at__isnull=True).update(revoked_at=now)
        invitation = Invitation.objects.create(
            account_id=actor_member.account_id, email=email, role=role, monthly_cap=cap,
            token_hash=_token_hash(token), invited_by=actor, expires_at=now + invitation_lifetime())
    link = invitation_link(token)
    sent = _invitation_send(invitation, link, inviter=actor)
    return invitation, link, sent


def _invitation_send(invitation: Invitation, link: str, *, inviter) -> bool:
    cap = ("no monthly cap" if invitation.monthly_cap is None
           else f"a monthly cap of {invitation.monthly_cap} credits")
    body = (f"{inviter.get_username()} invites you to join the account “{invitation.account}” on creditgate as "
            f"{invitation.get_role_display().lower()}, with {cap}.\n\n"
            f"Open this link to accept (sign up first if you have no login yet):\n{link}\n\n"
            f"The invitation expires on {invitation.expires_at:%Y-%m-%d %H:%M} UTC. If you did not expect it, "
            f"ignore this email.\n")
    try:
        send_mail(f"Join “{invitation.account}” on creditgate", body, settings.DEFAULT_FROM_EMAIL,
                  [invitation.email], fail_silently=False)
    except Exception:
        logger.warning("invitation email not sent", exc_info=True, extra={"invitation_id": invitation.pk})
        return False
    return True


def invitation_revoke(*, actor, invitation: Invitation) -> Invitation:
    """An owner withdraws a pending invitation: its link no longer works."""
    actor_member = services.owner_check(user=actor, what="revoke invitations")
    if invitation.account_id != actor_member.account_id:
        raise NotFound("No such invitation.")
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        state = invitation.state(timezone.now())
        if state == InvitationState.ACCEPTED:
            raise InvalidRequest("This invitation was already accepted: remove the member instead.",
                                 code="invitation_accepted")
        if invitation.revoked_at is None:
            invitation.revoked_at = timezone.now()
            invitation.save(update_fields=["revoked_at"])
    return invitation


def invitation_for_token(*, token) -> Invitation:
    """The pending invitation behind a link; a 404 if unknown, a 410 saying why if it is no longer
    pending (accepted, revoked, expired)."""
    invitation = None
    if isinstance(token, str) and 0 < len(token) <= 200:
        invitation = Invitation.objects.select_related("account", "invited_by").filter(
            token_hash=_token_hash(token)).first()
    if invitation is None:
        raise NotFound("This invitation link is not valid.", code="invitation_not_found")
    _pending_check(invitation)
    return invitation


def _pending_check(invitation: Invitation) -> None:
    state = invitation.state(timezone.now())
    if state != InvitationState.PENDING:
        message: dict[str, str] = {InvitationState.ACCEPTED: "This invitation was already used.",
                   InvitationState.REVOKED: "This invitation was withdrawn by the account's owner.",
                   InvitationState.EXPIRED: "This invitation has expired: ask the account's owner for a new one."}
        raise InvalidRequest(message[state], code=f"invitation_{state}", status_code=410,
                             details={"state": state})


def invitation_accept(*, user, token) -> AccountMember:
    """The logged-in user accepts the invitation behind `token`: they join its account with the
    role and cap the owner chose (member_join's rules)."""
    invitation = invitation_for_token(token=token)
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().select_related("account").get(pk=invitation.pk)
        _pending_check(invitation)  # again, under the row lock: accepted once
        member = member_join(user=user, account=invitation.account, role=invitation.role,
                             monthly_cap=invitation.monthly_cap)
        invitation.accepted_at, invitation.accepted_by = timezone.now(), user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        return member
