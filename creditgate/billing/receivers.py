"""Billing listens to the credits app (credits.events), which knows nothing of billing."""

from django.dispatch import receiver

from creditgate.billing import services
from creditgate.credits import events


@receiver(events.low_balance_crossed, dispatch_uid="billing_low_balance_email")
def _low_balance_crossed(sender, account_id, available, threshold, email, **kwargs):
    # After the capture committed (on_commit): a failure here never touches the money.
    services.low_balance_email_create(account_id=account_id, available=available, threshold=threshold, email=email)
