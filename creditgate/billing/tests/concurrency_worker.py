"""A separate OS process for billing's PostgreSQL concurrency tests (core.tests.races), against the
test database in DATABASE_URL.

    python -m creditgate.billing.tests.concurrency_worker '<json job>'

Operations: {"op": "webhook", "payload": "<body>", "signature": "<Stripe-Signature>"} delivers an
event to the webhook service as the view does; {"op": "capture", "account_id", "amount", "key"}
places and captures a hold.
"""

from creditgate.core.tests import races


def one(op: dict) -> dict:
    from creditgate.billing import services
    from creditgate.core.errors import ApplicationError
    from creditgate.credits import services as credits_services
    from creditgate.credits.models import Account

    try:
        if op["op"] == "webhook":
            result = services.stripe_webhook_handle(payload=op["payload"].encode(), signature=op["signature"])
            return {"ok": True, "outcome": result.outcome, "duplicate": result.duplicate, "event": result.event_id}
        if op["op"] == "capture":
            hold, _ = credits_services.hold_place(account=Account(pk=op["account_id"]), amount=op["amount"],
                                                  idempotency_key=op["key"], fingerprint="f")
            return {"ok": credits_services.hold_capture(hold_id=hold.pk, amount=op["amount"])}
        raise ValueError(op["op"])
    except ApplicationError as exc:
        return {"ok": False, "code": exc.code}


def _emails_sent() -> None:
    from creditgate.core import runtime

    runtime.wait_idle()  # emails handed to this process's runner go out before it exits


if __name__ == "__main__":
    races.worker_main(one, before_exit=_emails_sent)
