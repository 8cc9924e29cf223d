"""What the credits app tells other apps, once the transaction that caused it has committed.

Sent through `transaction.on_commit`, so a receiver never hears of a change that was rolled back,
and may do slow things (billing sends an email) without holding the ledger's row locks. The
credits app imports no receiver: billing connects to these in its AppConfig.
"""

from django.dispatch import Signal

# A capture left the account's available credits below its low-balance threshold while the alert
# was armed; the capture's transaction disarmed it, so each crossing is sent exactly once.
# Keyword arguments: account_id, available, threshold, email.
low_balance_crossed = Signal()
