"""A separate OS process for the PostgreSQL concurrency tests: it sets Django up against the
test database named in DATABASE_URL, says "ready", waits for "go" on stdin, then runs the given
operations from several threads at once and prints the outcomes as JSON.

    python -m creditgate.credits.tests.concurrency_worker '<json job>'
"""

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def run(job: dict, go: threading.Event) -> list:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from creditgate.core.errors import ApplicationError
    from creditgate.credits import services
    from creditgate.credits.models import Account, ApiKey

    def one(op):
        go.wait()
        # Each outcome names its operation and member, so a test can sort a race's outcomes.
        return {**attempt(op), "op": op["op"], "user_id": op.get("user_id")}

    def attempt(op):
        try:
            if op["op"] == "hold":
                account = Account(pk=op["account_id"])
                # A member's hold (user_id), made with an API key (api_key_id): their monthly caps apply.
                user = get_user_model()(pk=op["user_id"]) if op.get("user_id") else None
                api_key = ApiKey(pk=op["api_key_id"]) if op.get("api_key_id") else None
                hold, created = services.hold_place(account=account, amount=op["amount"], idempotency_key=op["key"],
                                                    fingerprint=op.get("fingerprint", "f"), user=user, api_key=api_key)
                return {"ok": True, "created": created, "hold_id": hold.pk}
            if op["op"] == "capture":
                return {"ok": services.hold_capture(hold_id=op["hold_id"], amount=op["amount"]),
                        "hold_id": op["hold_id"]}
            if op["op"] == "release":
                return {"ok": services.hold_release(hold_id=op["hold_id"], reason="race"), "hold_id": op["hold_id"]}
            raise ValueError(op["op"])
        except ApplicationError as exc:
            return {"ok": False, "code": exc.code, "details": exc.details}
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
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
