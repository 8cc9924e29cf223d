"""A separate OS process for the circuit breaker's cross-process tests: it sets Django up with
the breaker settings it is given (the store, and the test database in DATABASE_URL or the Redis
in REDIS_URL), says "ready", waits for "go" on stdin, then runs the breaker calls from several
threads at once and prints their results as JSON.

    python -m creditgate.providers.tests.breaker_worker '{"threads": 4, "ops": [...]}'

An op is {"op": "allow"|"record"|"state", "provider": ..., "model": ..., "ok": bool}.
"""

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor


def run(job: dict, go: threading.Event) -> list:
    from django.db import connection

    from creditgate.providers import breaker

    def one(op):
        go.wait()
        try:
            if op["op"] == "allow":
                return breaker.breaker_allow(op["provider"], op["model"])
            if op["op"] == "record":
                breaker.breaker_record(op["provider"], op["model"], op["ok"])
                return None
            if op["op"] == "state":
                return breaker.breaker_state(op["provider"], op.get("model")).state
            raise ValueError(op["op"])
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=job.get("threads", 1)) as pool:
        return list(pool.map(one, job["ops"]))


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
    import django

    django.setup()
    job = json.loads(sys.argv[1])
    go = threading.Event()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(2)
    go.set()
    print(json.dumps(run(job, go)), flush=True)


if __name__ == "__main__":
    main()
