"""Multi-process races for the tests: one harness, both sides.

The test's side, `Workers`: starts OS processes (`python -m <worker module> '<json job>'`), waits
until each says "ready" (Django set up, connections open), then says "go" to all at once and
collects what each printed. The worker's side, `worker_main`: sets Django up, says "ready",
waits for "go" on stdin, runs the job's operations from several threads released together, and
prints their outcomes as one JSON line.

    # the worker module
    def one(op: dict): ...               # runs one operation (imports Django code inside)
    if __name__ == "__main__":
        races.worker_main(one)

    # the test
    results = Workers(MODULE, [{"threads": 6, "ops": [...]}, ...], env=...).run()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


class Workers:
    """OS processes that each run a list of operations on several threads when told to go."""

    def __init__(self, module: str, jobs: list[dict], *, env: dict | None = None):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "creditgate.settings", **(env or {})}
        self.procs = [subprocess.Popen([sys.executable, "-m", module, json.dumps(job)], cwd=ROOT, env=env, text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE) for job in jobs]
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None  # stdin=PIPE
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def results(self, timeout: float = 120) -> list:
        out = []
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0
            out.extend(json.loads(stdout.strip().splitlines()[-1]))
        return out

    def run(self) -> list:
        self.go()
        return self.results()


def worker_main(one: Callable[[dict], object], *, before_exit: Callable[[], None] | None = None) -> None:
    """The worker process: `one(op)` for each op of the job (argv[1]), from job["threads"] threads
    released together once the test says "go"; prints the outcomes as JSON."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditgate.settings")
    import django

    django.setup()
    from django.db import connection

    job = json.loads(sys.argv[1])
    go = threading.Event()

    def run_one(op: dict):
        go.wait()
        try:
            return one(op)
        finally:
            connection.close()

    pool = ThreadPoolExecutor(max_workers=job.get("threads", 1))
    futures = [pool.submit(run_one, op) for op in job["ops"]]
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(2)
    go.set()
    results = [future.result() for future in futures]
    pool.shutdown()
    if before_exit is not None:
        before_exit()
    print(json.dumps(results), flush=True)
