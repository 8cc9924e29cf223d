"""django-allauth's adapter: sign-up may be closed by the operator (CREDITGATE_SIGNUP_OPEN=false).

Every user made by sign-up gets an account of their own, like any other user (credits.signals).
"""

from __future__ import annotations

import logging

# allauth.account.internal first: stages imports it, and it imports stages back (stagekit), a cycle
# that resolves only in this order. Which module first imported which depended on the order Django
# ran its system checks in (a set: any unrelated change could turn `migrate` into an ImportError).
import allauth.account.internal  # noqa: F401
from allauth.account import stages
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from django.conf import settings

logger = logging.getLogger(__name__)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return bool(settings.CREDITGATE_SIGNUP_OPEN)

    def send_mail(self, template_prefix, email, context) -> None:
        # An email Resend does not take must not turn the sign-up or the reset into a 500: the
        # user can ask again (the login page resends the verification), and the operator sees the log.
        from creditgate.core.errors import EmailNotSent

        try:
            super().send_mail(template_prefix, email, context)
        except EmailNotSent:
            logger.exception("account email not sent", extra={"template": template_prefix})

    def get_login_stages(self) -> list[str]:
        return [EmailVerificationStage.__module__ + "." + EmailVerificationStage.__name__
                if path == "allauth.account.stages.EmailVerificationStage" else path
                for path in super().get_login_stages()]


class EmailVerificationStage(stages.EmailVerificationStage):
    """Sign-up's mandatory verification: a user who signed up (allauth keeps their address) logs in
    only once it is verified. Users the operator made (the admin, createsuperuser, the demo, users
    from before sign-up existed) have no address with allauth and are not held back."""

    def handle(self):
        if not EmailAddress.objects.filter(user_id=self.login.user.pk).exists():
            return None, True
        return super().handle()
