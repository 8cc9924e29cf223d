"""API token authentication that also loads the user's account.

Every API request acts on the requesting user's account (credits.services.account_for_user), so
the token, the user and the account membership are read in one query instead of two.
"""

from rest_framework import authentication, exceptions


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's `Authorization: Token <key>`, unchanged but for what the query joins."""

    def authenticate_credentials(self, key):
        try:
            token = (self.get_model().objects.select_related("user", "user__credit_membership__account")
                     .get(key=key))
        except self.get_model().DoesNotExist:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return (token.user, token)
