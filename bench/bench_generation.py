"""Generation benchmarks, both as ratios against a baseline measured in the same run.

1. Fan-out: a batch of 8 on a model configured to return one image per call (as dall-e-3 was),
   against the sandbox answering after 500 ms. Wall time of the batch divided by the wall time of
   a single call. Target <= 1.5: the 8 calls run concurrently, not one after another.
2. Request overhead: POST /api/v1/images/generations/ up to its 202 (validate, price, hold, job
   row, enqueue) against GET /api/v1/system/ai-config/ on the same gunicorn server in the same
   run, one request at a time from wrk (C, not the bottleneck). Target <= 3x.

    .venv/bin/python bench/bench_generation.py [--rounds 3] [--seconds 3] [--workers 2]

Runs on a fresh SQLite database in a temporary var dir (or DATABASE_URL if set), with the
provider sandbox in its own process. Jobs accepted in part 2 run in-process against a sandbox
that answers slowly, so the server's CPU goes to the requests being measured.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def start_sandbox(env: dict, latency_ms: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, "manage.py", "sandbox", "--port", str(port), "--latency-ms", str(latency_ms)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/_sandbox/stats")
    return proc, url


def fan_out(env: dict, rounds: int) -> float:
    sandbox, url = start_sandbox(env, latency_ms=500)
    try:
        os.environ.update(env, CREDITGATE_SANDBOX_URL=url)
        import django

        django.setup()
        from creditgate.catalog import selectors
        from creditgate.providers.registry import adapter_for

        # The Quality tier's model, told it returns one image per call: the case dall-e-3 was.
        model = selectors.models_servable_by_tier()["quality"]
        model.max_images_per_call = 1
        adapter = adapter_for(provider_id=model.provider_id)

        import asyncio

        from asgiref.sync import async_to_sync
        from django.conf import settings

        async def all_at_once(sizes: list[int]) -> list:
            # The calls at once, as the job runner makes them (generation.services: tasks on its
            # loop, at most CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS at a time); one call each.
            limit = asyncio.Semaphore(settings.CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS)

            async def one(n: int) -> list:
                async with limit:
                    return await adapter.generate_image_batch(model=model, prompt="a lighthouse at dusk", n=n)

            return [o for batch in await asyncio.gather(*(one(n) for n in sizes)) for o in batch]

        def timed(count: int) -> float:
            start = time.perf_counter()
            outcomes = async_to_sync(all_at_once)(adapter.image_call_sizes(model=model, count=count))
            elapsed = time.perf_counter() - start
            assert len(outcomes) == count and all(o.ok for o in outcomes), outcomes
            return elapsed

        timed(1)  # warm-up: connections, imports
        single = statistics.median(timed(1) for _ in range(rounds))
        batch = statistics.median(timed(8) for _ in range(rounds))
    finally:
        sandbox.terminate()
        sandbox.wait()
    ratio = batch / single
    print(f"fan-out: 1 image {single * 1000:.0f} ms, 8 images (1 per call) {batch * 1000:.0f} ms "
          f"-> ratio {ratio:.2f} (target <= 1.5)")
    return ratio


POST_LUA = """
counter = 0
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = "bench-" .. os.time() .. "-" .. math.random(1, 1e9) .. "-" .. counter
  return wrk.format("POST", nil, nil, '{"prompt": "a lighthouse at dusk", "tier": "basic", "count": 1}')
end
"""


def wrk_rate(url: str, seconds: float, headers: list[str], script: str | None = None) -> float:
    cmd = ["wrk", "-t1", "-c1", f"-d{max(1, round(seconds))}s"]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise SystemExit(f"{url}: no Requests/sec in wrk's output\n{out}")
    return float(rate.group(1))


def request_overhead(env: dict, rounds: int, seconds: float, workers: int) -> float:
    sandbox, sandbox_url = start_sandbox(env, latency_ms=60_000)
    env = {**env, "CREDITGATE_SANDBOX_URL": sandbox_url}
    setup = ("import django; django.setup();"
             "from django.contrib.auth import get_user_model;"
             "from rest_framework.authtoken.models import Token;"
             "from creditgate.credits import services as s;"
             "u = get_user_model().objects.create_user('bench');"
             "s.credits_grant(account=s.account_for_user(user=u), amount=10**9, reason='benchmark');"
             "print(Token.objects.create(user=u).key)")
    token = subprocess.run([PYTHON, "-c", setup], cwd=ROOT, env=env, check=True, capture_output=True,
                           text=True).stdout.strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen([PYTHON, "-m", "gunicorn", "creditgate.wsgi", "-w", str(workers), "-b",
                               f"127.0.0.1:{port}", "--log-level", "warning"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/api/v1/system/ai-config/")
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(POST_LUA)
        auth = [f"Authorization: Token {token}"]
        post_headers = [*auth, "Content-Type: application/json"]
        wrk_rate(base + "/api/v1/system/ai-config/", 1, [])  # warm-up
        wrk_rate(base + "/api/v1/images/generations/", 1, post_headers, f.name)
        ratios, context = [], []
        for _ in range(rounds):
            get_rate = wrk_rate(base + "/api/v1/system/ai-config/", seconds, [])
            post_rate = wrk_rate(base + "/api/v1/images/generations/", seconds, post_headers, f.name)
            # Context, not the target: an authenticated read through DRF (token lookup, account
            # lookup, one query), i.e. the floor any authenticated endpoint pays before its own work.
            balance_rate = wrk_rate(base + "/api/v1/credits/balance/", seconds, auth)
            ratios.append(get_rate / post_rate)
            context.append(get_rate / balance_rate)
            print(f"  round: GET ai-config {1000 / get_rate:.2f} ms, POST images (to 202) {1000 / post_rate:.2f} ms "
                  f"-> {get_rate / post_rate:.2f}x; GET balance {1000 / balance_rate:.2f} ms")
    finally:
        server.terminate()
        server.wait()
        sandbox.terminate()
        sandbox.wait()
    ratio = statistics.median(ratios)
    print(f"request overhead: POST images up to the 202 costs {ratio:.2f}x a GET of ai-config (target <= 3); "
          f"an authenticated GET of the balance costs {statistics.median(context):.2f}x")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    var_dir = tempfile.mkdtemp(prefix="creditgate-bench-")
    # DEBUG off, as deployed: with it on, Django records every query, which is not what production pays.
    env = {**os.environ, "CREDITGATE_VAR_DIR": var_dir, "DJANGO_SETTINGS_MODULE": "creditgate.settings",
           "DEBUG": "false", "SECRET_KEY": "bench-only", "ALLOWED_HOSTS": "127.0.0.1,localhost",
           # Plain http on loopback: no redirect to https, cookies over http.
           "CREDITGATE_SECURE_SSL_REDIRECT": "false", "CREDITGATE_SECURE_COOKIES": "false",
           "CREDITGATE_ENCRYPTION_KEYS": "Zm9yLWJlbmNobWFya3Mtb25seS0zMi1ieXRlcy1rZXk=",
           "CREDITGATE_SANDBOX": "true", "LOG_LEVEL": "WARNING",
           "CREDITGATE_JOBS_BACKEND": "inprocess", "CREDITGATE_GENERATION_RATE": "off"}
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    print("database:", "DATABASE_URL" if os.environ.get("DATABASE_URL") else "SQLite",
          "| cache:", "Redis" if os.environ.get("REDIS_URL") else "file", "| jobs: in-process")
    request_overhead(env, args.rounds, args.seconds, args.workers)
    fan_out(env, args.rounds)


if __name__ == "__main__":
    main()
