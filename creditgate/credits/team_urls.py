from django.urls import path

from creditgate.credits import team_apis

urlpatterns = [
    path("members/", team_apis.MemberListApi.as_view(), name="account-members"),
    path("members/<int:member_id>/", team_apis.MemberDetailApi.as_view(), name="account-member"),
    path("api-keys/", team_apis.ApiKeyListApi.as_view(), name="api-keys"),
    path("api-keys/<int:key_id>/", team_apis.ApiKeyDetailApi.as_view(), name="api-key"),
    path("api-keys/<int:key_id>/revoke/", team_apis.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
]
