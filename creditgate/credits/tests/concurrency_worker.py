"""A separate OS process for the PostgreSQL concurrency tests (core.tests.races): holds, captures
and releases from several threads at once, against the test database in DATABASE_URL.

    python -m creditgate.credits.tests.concurrency_worker '<json job>'
"""

from creditgate.core.tests import races


def one(op: dict) -> dict:
    # Each outcome names its operation and member, so a test can sort a race's outcomes.
    return {**attempt(op), "op": op["op"], "user_id": op.get("user_id")}


def attempt(op: dict) -> dict:
    from django.contrib.auth import get_user_model

    from creditgate.core.errors import ApplicationError
    from creditgate.credits import services
    from creditgate.credits.models import Account, ApiKey

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
            return {"ok": services.hold_capture(hold_id=op["hold_id"], amount=op["amount"]), "hold_id": op["hold_id"]}
        if op["op"] == "release":
            return {"ok": services.hold_release(hold_id=op["hold_id"], reason="race"), "hold_id": op["hold_id"]}
        raise ValueError(op["op"])
    except ApplicationError as exc:
        return {"ok": False, "code": exc.code, "details": exc.details}


if __name__ == "__main__":
    races.worker_main(one)
