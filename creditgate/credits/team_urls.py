from django.urls import path

from creditgate.credits import team_apis

urlpatterns = [
    path("members/", team_apis.MemberListApi.as_view(), name="account-members"),
    path("members/<int:member_id>/", team_apis.MemberDetailApi.as_view(), name="account-member"),
    path("api-keys/", team_apis.ApiKeyListApi.as_view(), name="api-keys"),
    path("api-keys/<int:key_id>/", team_apis.ApiKeyDetailApi.as_view(), name="api-key"),
    path("api-keys/<int:key_id>/revoke/", team_apis.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("members/<int:member_id>/remove/", team_apis.MemberRemoveApi.as_view(), name="account-member-remove"),
    path("members/<int:member_id>/make-owner/", team_apis.MemberTransferApi.as_view(), name="account-member-owner"),
    path("leave/", team_apis.LeaveApi.as_view(), name="account-leave"),
    path("invitations/", team_apis.InvitationListApi.as_view(), name="invitations"),
    path("invitations/<int:invitation_id>/revoke/", team_apis.InvitationRevokeApi.as_view(),
         name="invitation-revoke"),
    path("invitations/accept/", team_apis.InvitationAcceptApi.as_view(), name="invitation-accept"),
]
