"""API authentication that also loads the user's account.

Every API request acts on the requesting user's account (credits.services.account_for_user), so
the credential, the user and the account membership are read in one query instead of two.

- `ApiKeyAuthentication`: a member's API key, `Authorization: Bearer cg_<prefix>.<secret>`
  (credits.services.api_key_authenticate). `request.auth` is the ApiKey: its monthly cap applies
  to the requests made with it.
- `TokenAuthentication`: DRF's `Authorization: Token <key>`, the single per-user token of earlier
  versions. It keeps working until the token is revoked (deleted); new integrations use API keys.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from creditgate.credits import services
from creditgate.credits.models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid Authorization header: send 'Bearer <API key>'.")
        try:
            presented = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid API key.") from None
        try:
            api_key = services.api_key_authenticate(presented=presented)
        except services.ApiKeyRejected as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        user = api_key.member.user
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return (user, api_key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


def request_api_key(request) -> ApiKey | None:
    """The API key a request was authenticated with, if it was."""
    return request.auth if isinstance(request.auth, ApiKey) else None


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's `Authorization: Token <key>`, unchanged but for what the query joins."""

    def authenticate_credentials(self, key):
        try:
            token = (Token.objects.select_related("user", "user__credit_membership__account")
                     .get(key=key))
        except Token.DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return (token.user, token)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema names API keys (drf-spectacular finds it by the class path)."""

    target_class = "creditgate.credits.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "cg_<prefix>.<secret>",
                "description": "A member's API key (the page's Team section, or POST /api/v1/account/api-keys/)."}
