"""What every page may need to know about accounts: whether self sign-up is open
(CREDITGATE_SIGNUP_OPEN), so the login and invitation pages offer it only when it is."""

from django.conf import settings


def accounts(request) -> dict:
    return {"signup_open": bool(settings.CREDITGATE_SIGNUP_OPEN)}
