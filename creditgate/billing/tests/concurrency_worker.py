"""A separate OS process for billing's PostgreSQL concurrency tests: sets Django up against the
test database in DATABASE_URL, says "ready", waits for "go" on stdin, then runs the given
operations from several threads at once and prints the outcomes as JSON.

    python -m creditgate.billing.tests.concurrency_worker '<json job>'

Operations: {"op": "webhook", "payload": "<body>", "signature": "<Stripe-Signature>"} delivers an
event to the webhook service as the view does; {"op": "capture", "account_id", "amount", "key"}
places and captures a hold.
"""

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def run(job: dict, go: threading.Event) -> list:
    from django.db import connection

    from creditgate.billing import services
    from creditgate.core.errors import ApplicationError
    from creditgate.credits import services as credits_services
    from creditgate.credits.models import Account

    def one(op):
        go.wait()
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
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=job["threads"]) as pool:
        return list(pool.map(one, job["ops"]))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
    import django

    django.setup()
    job = json.loads(sys.argv[1])
    go = threading.Event()
    print("ready", flush=True)
    results = []
    thread = threading.Thread(target=lambda: results.extend(run(job, go)))
    thread.start()
    sys.stdin.readline()
    go.set()
    thread.join()
    from creditgate.billing import dispatch

    dispatch.wait_idle()  # emails handed to this process's runner go out before it exits
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
