from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from creditgate.core.errors import ApplicationError
from creditgate.credits import selectors, services


class Command(BaseCommand):
    help = "Add credits to a user's account through the ledger."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("amount", type=int)
        parser.add_argument("--reason", default="granted by an operator (manage.py grant_credits)")

    def handle(self, *args, username, amount, reason, **options):
        user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        account = services.account_for_user(user=user)
        try:
            services.credits_grant(account=account, amount=amount, reason=reason)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        balance = selectors.balance_get(account=account)
        self.stdout.write(f"Granted {amount} credits to {username}: balance {balance['balance']} "
                          f"(available {balance['available']}, held {balance['held']}).")
