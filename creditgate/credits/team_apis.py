"""The team API: the account's members with their monthly caps and spending, members' API keys,
invitations, and leaving, removing and handing over (the rules: credits.services and credits.team).

Owners see and manage everyone; a member sees themself and manages their own keys. Requests
made with an API key may read but not change any of this (a leaked key must not be able to make
itself a new, uncapped key): changes need a login session or the legacy token.
"""

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from creditgate.core.schema import error_response
from creditgate.core.serializer_fields import StrictCharField, StrictIntegerField, VisibleTextField
from creditgate.credits import selectors, services, team
from creditgate.credits.authentication import request_api_key
from creditgate.credits.models import InvitationState, MemberRole

FORBIDDEN = error_response("permission_denied: only an owner may do this (or: made with an API key, which may not "
                           "change members, keys or webhooks).")
NOT_FOUND = error_response("not_found: no such member or key in this account (or not yours to see).")
INVALID = error_response("invalid_request: `details` names the fields.")


class NoChangesWithApiKey(permissions.BasePermission):
    message = "API keys cannot change members, API keys or webhooks; use the page (or a login session)."

    def has_permission(self, request, view):
        return request.method in permissions.SAFE_METHODS or request_api_key(request) is None


class TeamApi(APIView):
    """The base of the account's team endpoints (here and in webhooks): signed in, no changes with an API key."""

    permission_classes = [permissions.IsAuthenticated, NoChangesWithApiKey]

    def viewer(self, request):
        return services.member_for_user(user=request.user)


# --- Members ----------------------------------------------------------------------------------


@extend_schema_serializer(component_name="Member")
class MemberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=MemberRole.choices)
    monthly_cap = serializers.IntegerField(allow_null=True, help_text="Credits per calendar month; null: no cap.")
    month = serializers.CharField(help_text="The month the figures are for, YYYY-MM (CREDITGATE_SPENDING_TIME_ZONE).")
    spent = serializers.IntegerField(help_text="Credits charged this month.")
    held = serializers.IntegerField(help_text="Credits held by this member's running jobs.")
    used = serializers.IntegerField(help_text="spent + held: what counts against the cap.")
    over_cap = serializers.BooleanField(help_text="The cap is below what was already used this month: the member's "
                                                  "new jobs are refused until the month turns or the cap is raised.")
    is_you = serializers.BooleanField()
    joined_at = serializers.DateTimeField()


def _member_data(member, spending, viewer) -> dict:
    return {"id": member.pk, "username": member.user.get_username(), "role": member.role,
            "monthly_cap": member.monthly_cap, "month": spending.month.strftime("%Y-%m"), "spent": spending.spent,
            "held": spending.held, "used": spending.used,
            "over_cap": selectors.cap_over(cap=member.monthly_cap, used=spending.used),
            "is_you": member.pk == viewer.pk,
            "joined_at": member.joined_at}


class MemberListApi(TeamApi):
    """The account's members and what each used this month (a member sees only themself)."""

    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request):
        viewer = self.viewer(request)
        rows = selectors.members_list(viewer=viewer)
        return Response([_member_data(m, s, viewer) for m, s in rows])


class MemberDetailApi(TeamApi):
    @extend_schema_serializer(component_name="MemberUpdate")
    class InputSerializer(serializers.Serializer):
        monthly_cap = StrictIntegerField(required=False, allow_null=True, min_value=0,
                                         max_value=services.MAX_AMOUNT, help_text="null: no cap.")
        role = serializers.ChoiceField(choices=MemberRole.choices, required=False)

    @extend_schema(responses={200: MemberSerializer, 404: NOT_FOUND})
    def get(self, request, member_id: int):
        viewer = self.viewer(request)
        member = selectors.member_get(viewer=viewer, member_id=member_id)
        return Response(_member_data(member, selectors.member_spending(member=member), viewer))

    @extend_schema(request=InputSerializer, responses={200: MemberSerializer, 400: INVALID, 403: FORBIDDEN,
                                                       404: NOT_FOUND})
    def patch(self, request, member_id: int):
        """An owner sets a member's monthly cap (null: none) or role. The last owner stays one."""
        viewer = self.viewer(request)
        member = selectors.member_get(viewer=viewer, member_id=member_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member = services.member_update(actor=request.user, member=member, **serializer.validated_data)
        return Response(_member_data(member, selectors.member_spending(member=member), viewer))


# --- API keys -------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="ApiKey")
class ApiKeySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    hint = serializers.CharField(help_text="The key's public start, e.g. cg_Ab12Cd34…, to recognise it.")
    member = serializers.IntegerField(help_text="The member the key acts as.")
    username = serializers.CharField()
    monthly_cap = serializers.IntegerField(allow_null=True, help_text="Credits per month for this key; null: none "
                                                                      "(the member's cap still applies).")
    month = serializers.CharField()
    spent = serializers.IntegerField()
    held = serializers.IntegerField()
    used = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="To the minute.")
    revoked_at = serializers.DateTimeField(allow_null=True, help_text="Set: the key answers 401 from then on.")


@extend_schema_serializer(component_name="ApiKeyCreated")
class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The key itself. Shown this once: only a hash of it is kept.")


def _key_data(key, spending) -> dict:
    return {"id": key.pk, "name": key.name, "hint": f"{services.API_KEY_MARKER}{key.prefix}…",
            "member": key.member_id, "username": key.member.user.get_username(), "monthly_cap": key.monthly_cap,
            "month": spending.month.strftime("%Y-%m"), "spent": spending.spent, "held": spending.held,
            "used": spending.used, "created_at": key.created_at, "last_used_at": key.last_used_at,
            "revoked_at": key.revoked_at}


class ApiKeyListApi(TeamApi):
    @extend_schema_serializer(component_name="ApiKeyCreate")
    class InputSerializer(serializers.Serializer):
        name = VisibleTextField(max_length=100)  # the name rule of services._key_name_clean
        member = StrictIntegerField(required=False, help_text="Whose key (owners only); default: yours.")
        monthly_cap = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=services.MAX_AMOUNT)

    @extend_schema(responses=ApiKeySerializer(many=True))
    def get(self, request):
        """The keys you manage: an owner's are the account's, a member's their own; revoked ones too."""
        return Response([_key_data(k, s) for k, s in selectors.api_keys_list(viewer=self.viewer(request))])

    @extend_schema(request=InputSerializer, responses={201: ApiKeyCreatedSerializer, 400: INVALID, 403: FORBIDDEN,
                                                       404: NOT_FOUND})
    def post(self, request):
        """Make a key; the answer holds the key itself, shown this once."""
        viewer = self.viewer(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        member = selectors.member_get(viewer=viewer, member_id=data["member"]) if "member" in data else viewer
        key, secret = services.api_key_create(actor=request.user, member=member, name=data["name"],
                                              monthly_cap=data.get("monthly_cap"))
        return Response({**_key_data(key, selectors.api_key_spending(api_key=key)), "key": secret},
                        status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(TeamApi):
    @extend_schema_serializer(component_name="ApiKeyUpdate")
    class InputSerializer(serializers.Serializer):
        name = VisibleTextField(required=False, max_length=100)
        monthly_cap = StrictIntegerField(required=False, allow_null=True, min_value=0, max_value=services.MAX_AMOUNT)

    @extend_schema(responses={200: ApiKeySerializer, 404: NOT_FOUND})
    def get(self, request, key_id: int):
        key = selectors.api_key_get(viewer=self.viewer(request), key_id=key_id)
        return Response(_key_data(key, selectors.api_key_spending(api_key=key)))

    @extend_schema(request=InputSerializer, responses={200: ApiKeySerializer, 400: INVALID, 403: FORBIDDEN,
                                                       404: NOT_FOUND})
    def patch(self, request, key_id: int):
        key = selectors.api_key_get(viewer=self.viewer(request), key_id=key_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key = services.api_key_update(actor=request.user, api_key=key, **serializer.validated_data)
        return Response(_key_data(key, selectors.api_key_spending(api_key=key)))


class ApiKeyRevokeApi(TeamApi):
    @extend_schema(request=None, responses={200: ApiKeySerializer, 403: FORBIDDEN, 404: NOT_FOUND})
    def post(self, request, key_id: int):
        """Revoke the key: every request with it answers 401 from now on. Final."""
        key = selectors.api_key_get(viewer=self.viewer(request), key_id=key_id)
        key = services.api_key_revoke(actor=request.user, api_key=key)
        return Response(_key_data(key, selectors.api_key_spending(api_key=key)))




# --- Membership: leave, remove, hand over ---------------------------------------------------------


class MemberRemoveApi(TeamApi):
    @extend_schema(request=None, responses={204: None, 400: INVALID, 403: FORBIDDEN, 404: NOT_FOUND})
    def post(self, request, member_id: int):
        """An owner removes a member: they are back in their own account, their API keys revoked;
        their running jobs still settle."""
        member = selectors.member_get(viewer=self.viewer(request), member_id=member_id)
        team.member_remove(actor=request.user, member=member)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberTransferApi(TeamApi):
    @extend_schema(request=None, responses={200: MemberSerializer, 400: INVALID, 403: FORBIDDEN, 404: NOT_FOUND})
    def post(self, request, member_id: int):
        """An owner makes this member the owner and becomes a member."""
        viewer = self.viewer(request)
        member = selectors.member_get(viewer=viewer, member_id=member_id)
        member = team.ownership_transfer(actor=request.user, member=member)
        return Response(_member_data(member, selectors.member_spending(member=member), self.viewer(request)))


class LeaveApi(TeamApi):
    @extend_schema(request=None, responses={204: None, 400: INVALID, 403: FORBIDDEN})
    def post(self, request):
        """Leave the team you are in: you are back in your own account, as it was (credits and
        history kept). The last owner hands the account over first."""
        team.member_leave(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Invitations ----------------------------------------------------------------------------------


@extend_schema_serializer(component_name="Invitation")
class InvitationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=MemberRole.choices)
    monthly_cap = serializers.IntegerField(allow_null=True, help_text="The new member's cap; null: none.")
    invited_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=InvitationState.choices)


@extend_schema_serializer(component_name="InvitationCreated")
class InvitationCreatedSerializer(InvitationSerializer):
    link = serializers.CharField(help_text="The invitation's link, shown this once (it was also emailed).")
    email_sent = serializers.BooleanField(help_text="false: the email could not be sent; hand the link over "
                                                    "yourself.")


def _invitation_data(invitation, now) -> dict:
    return {"id": invitation.pk, "email": invitation.email, "role": invitation.role,
            "monthly_cap": invitation.monthly_cap,
            "invited_by": invitation.invited_by.get_username() if invitation.invited_by else None,
            "created_at": invitation.created_at, "expires_at": invitation.expires_at,
            "state": invitation.state(now)}


class InvitationListApi(TeamApi):
    @extend_schema_serializer(component_name="InvitationCreate")
    class InputSerializer(serializers.Serializer):
        email = StrictCharField(max_length=254)
        role = serializers.ChoiceField(choices=MemberRole.choices, required=False, default=MemberRole.MEMBER)
        monthly_cap = StrictIntegerField(required=False, allow_null=True, min_value=0,
                                         max_value=services.MAX_AMOUNT, help_text="null: no cap.")

    @extend_schema(responses={200: InvitationSerializer(many=True), 403: FORBIDDEN})
    def get(self, request):
        """The account's pending invitations (owners)."""
        viewer = services.owner_check(user=request.user, what="see invitations")
        now = timezone.now()
        return Response([_invitation_data(i, now) for i in selectors.invitations_pending(account=viewer.account)])

    @extend_schema(request=InputSerializer, responses={201: InvitationCreatedSerializer, 400: INVALID,
                                                       403: FORBIDDEN})
    def post(self, request):
        """Invite someone by email with a role and a monthly cap (owners); the email holds the link."""
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        invitation, link, sent = team.invitation_create(actor=request.user, **serializer.validated_data)
        return Response({**_invitation_data(invitation, timezone.now()), "link": link, "email_sent": sent},
                        status=status.HTTP_201_CREATED)


class InvitationRevokeApi(TeamApi):
    @extend_schema(request=None, responses={200: InvitationSerializer, 400: INVALID, 403: FORBIDDEN,
                                            404: NOT_FOUND})
    def post(self, request, invitation_id: int):
        """Withdraw a pending invitation (owners): its link stops working."""
        viewer = services.owner_check(user=request.user, what="revoke invitations")
        invitation = selectors.invitation_get(account=viewer.account, invitation_id=invitation_id)
        invitation = team.invitation_revoke(actor=request.user, invitation=invitation)
        return Response(_invitation_data(invitation, timezone.now()))


class InvitationAcceptApi(TeamApi):
    @extend_schema_serializer(component_name="InvitationAccept")
    class InputSerializer(serializers.Serializer):
        token = StrictCharField(max_length=200, help_text="The token at the end of the invitation's link.")

    @extend_schema(request=InputSerializer, responses={200: MemberSerializer, 400: INVALID, 403: FORBIDDEN,
                                                       404: NOT_FOUND,
                                                       410: error_response("invitation_expired, _revoked or "
                                                                           "_accepted: the link no longer works.")})
    def post(self, request):
        """Accept an invitation as the logged-in user: you join its account with its role and cap."""
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        member = team.invitation_accept(user=request.user, token=serializer.validated_data["token"])
        return Response(_member_data(member, selectors.member_spending(member=member), member))
