"""A separate OS process for the circuit breaker's cross-process tests (core.tests.races): it runs
with the breaker settings it is given (the store, and the test database in DATABASE_URL or the
Redis in REDIS_URL).

    python -m creditgate.providers.tests.breaker_worker '{"threads": 4, "ops": [...]}'

An op is {"op": "allow"|"record"|"state", "provider": ..., "model": ..., "ok": bool}.
"""

from creditgate.core.tests import races


def one(op: dict):
    from creditgate.providers import breaker

    if op["op"] == "allow":
        return breaker.breaker_allow(op["provider"], op["model"])
    if op["op"] == "record":
        breaker.breaker_record(op["provider"], op["model"], op["ok"])
        return None
    if op["op"] == "state":
        return breaker.breaker_state(op["provider"], op.get("model")).state
    raise ValueError(op["op"])


if __name__ == "__main__":
    races.worker_main(one)
