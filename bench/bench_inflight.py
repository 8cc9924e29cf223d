"""Generations in flight: many clients, a provider that takes L seconds, side by side in one run.

A host's throughput with a real provider (1 to 60 s a call) is bounded by how many calls it can
hold at once: at best c/L operations per second for c clients. Every target talks to the same
OpenAI-compatible fake provider (bench_paid_jobs.py's), which answers each call after L seconds:

- `litellm`: LiteLLM's proxy in front of it (`--litellm PATH`, installed in its own virtualenv as
  bench_paid_jobs.py says), one operation a chat completion;
- `cg-embedded`: creditgate's embedded default (SQLite, jobs in-process), the Procfile's web line
  with one process;
- `cg-full`: the production shape on PostgreSQL + Redis, exactly the Procfile's web, worker and
  housekeeping lines.
For creditgate one operation is a paid text job: POST /api/v1/text/generations/ with
`Prefer: wait=30`, then GET /api/v1/jobs/{id}/?wait=30 until it is final.

Clients are asyncio connections (one keep-alive connection each), so 1,000 of them cost the
client little. For each target and c it prints one line: ops/s, its fraction of the bound c/L,
its ratio to LiteLLM at the same c, median and p95 latency, the server's CPU per operation, the
peak number of PostgreSQL connections to its database and the server's peak RSS (every process of
it), how busy the whole machine's CPU was (the load generator, the fake and the database included:
near 100% the figure is the machine's, below it something else bounds the target), the machine's CPU
an op outside the server ("rest": the load generator, the fake, the database, anything else running),
and how many operations failed or timed out (a failure is counted, never retried). After each c, a
"budget" line: the CPU an op that 0.9 of the bound leaves a server on this machine once the load
generator and the fake have theirs (from LiteLLM's run, which has no database), beside what each
target used.

creditgate's clients all speak for one account by default, as one large API customer would: every
job's hold and settlement then queue for that account's row. `--accounts N` spreads them over N
accounts (one member each) to show what that queue costs. No rate limit is set on either target
(CREDITGATE_GENERATION_RATE=off, as LiteLLM's proxy has none).

    .venv/bin/python bench/bench_inflight.py [--latency 2] [--clients 100,500,1000] [--seconds 20]
        [--litellm PATH] [--targets litellm,cg-embedded,cg-full] [--accounts 1]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# The sibling benchmark's process helpers (run as a script, bench/ is first on sys.path).
from bench_paid_jobs import (
    FINAL,
    LITELLM_KEY,
    PYTHON,
    ROOT,
    Server,
    cpu_seconds,
    creditgate_env,
    start_creditgate,
    start_fake,
    start_litellm,
)

TIMEOUT = 60.0


# --- An HTTP/1.1 client on asyncio streams -------------------------------------------------------


class Connection:
    """One keep-alive connection; reopened when the server closed it."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.token: str | None = None  # the account this client speaks for (creditgate)

    async def request(self, method: str, path: str, body: dict | None = None,
                      headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            payload = json.dumps(body).encode() if body is not None else b""
            head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(payload)}",
                    "Content-Type: application/json", *(f"{k}: {v}" for k, v in (headers or {}).items())]
            try:
                self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                await self.writer.drain()
                return await self._response(self.reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def one_chat(conn: Connection) -> None:
    status, data = await conn.request("POST", "/v1/chat/completions",
                                      {"model": "bench", "messages": [{"role": "user", "content": "Say hello."}],
                                       "max_completion_tokens": 16}, {"Authorization": f"Bearer {LITELLM_KEY}"})
    if status != 200:
        raise RuntimeError(f"chat completion answered {status}: {data[:200]!r}")


async def one_job(conn: Connection, token: str) -> None:
    auth = {"Authorization": f"Token {token}"}
    status, data = await conn.request("POST", "/api/v1/text/generations/", {"prompt": "Say hello.", "max_tokens": 16},
                                      {**auth, "Prefer": "wait=30"})
    if status not in (200, 202):
        raise RuntimeError(f"POST answered {status}: {data[:200]!r}")
    job = json.loads(data)
    while job["status"] not in FINAL:
        status, data = await conn.request("GET", f"/api/v1/jobs/{job['id']}/?wait=30", headers=auth)
        if status != 200:
            raise RuntimeError(f"GET answered {status}: {data[:200]!r}")
        job = json.loads(data)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['status']}: {job.get('error')}")


# --- What the server uses while it runs -----------------------------------------------------------


def tree_rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes and their descendants now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry))
    total_kib, todo, seen = 0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


def host_cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot (/proc/stat), every core."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def pg_connections(dbname: str) -> int:
    import psycopg

    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)).fetchone()
        return int(row[0]) if row else 0


@dataclass
class Peaks:
    rss_mib: float = 0.0
    pg: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


def watch(server: Server, dbname: str | None, peaks: Peaks) -> None:
    while not peaks.stop.wait(0.5):
        peaks.rss_mib = max(peaks.rss_mib, tree_rss_mib(server.pids()))
        if dbname:
            peaks.pg = max(peaks.pg, pg_connections(dbname))


# --- One measurement --------------------------------------------------------------------------------


@dataclass
class Sample:
    rate: float
    median_s: float
    p95_s: float
    cpu_ms: float
    failed: int
    rss_mib: float
    pg: int
    host_busy: float  # of the machine's CPU (every core), the load generator's and the database's included
    other_ms: float  # the machine's CPU an op outside the server: the load generator, the fake, the database
    reasons: str = ""


async def _clients(port: int, operation, clients: int, seconds: float) -> tuple[list[float], int, Counter]:
    latencies: list[float] = []
    failed = 0
    reasons: Counter = Counter()  # what the failures were (the first words of each), for the line
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal failed
        conn = Connection(port)
        try:
            while time.monotonic() < stop:
                began = time.monotonic()
                try:
                    await asyncio.wait_for(operation(conn), TIMEOUT)
                    latencies.append(time.monotonic() - began)
                except (TimeoutError, RuntimeError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    failed += 1
                    reasons[(type(exc).__name__ + ": " + str(exc))[:60]] += 1
                    conn.close()
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, failed, reasons


def measure(server: Server, operation, clients: int, seconds: float, dbname: str | None) -> Sample:
    peaks = Peaks()
    watcher = threading.Thread(target=watch, args=(server, dbname, peaks), daemon=True)
    cpu_before, host_before, started = cpu_seconds(server.pids()), host_cpu_ticks(), time.monotonic()
    watcher.start()
    latencies, failed, reasons = asyncio.run(_clients(server.port, operation, clients, seconds))
    elapsed = time.monotonic() - started  # operations started before the end may finish after it
    peaks.stop.set()
    watcher.join()
    cpu = cpu_seconds(server.pids()) - cpu_before
    host_after = host_cpu_ticks()
    host_busy = (host_after[0] - host_before[0]) / max(1, host_after[1] - host_before[1])
    host_busy_s = (host_after[0] - host_before[0]) / os.sysconf("SC_CLK_TCK")
    done = sorted(latencies)
    n = max(len(done), 1)
    return Sample(rate=len(done) / elapsed, median_s=statistics.median(done) if done else float("nan"),
                  p95_s=done[min(len(done) - 1, int(len(done) * 0.95))] if done else float("nan"),
                  cpu_ms=cpu / n * 1000, failed=failed, rss_mib=peaks.rss_mib, pg=peaks.pg, host_busy=host_busy,
                  other_ms=max(0.0, host_busy_s - cpu) / n * 1000,
                  reasons=", ".join(f"{count}× {reason}" for reason, count in reasons.most_common(2)))


ACCOUNTS = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from creditgate.credits import services
for i in range(1, {n}):
    user, _ = get_user_model().objects.get_or_create(username=f"bench-{{i}}")
    services.credits_grant(account=services.account_for_user(user=user), amount=10**11, reason="benchmark")
    print("TOKEN", Token.objects.get_or_create(user=user)[0].key)
"""


def tokens_of_accounts(server: Server, workdir: Path, *, full: bool, accounts: int) -> list[str]:
    """The bench account's token, and those of `accounts` - 1 more accounts (one member each)."""
    if accounts <= 1:
        return [server.token]
    env = creditgate_env(workdir / server.name, full=full)
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", ACCOUNTS.format(n=accounts)], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    return [server.token, *(line.split()[1] for line in out.splitlines() if line.startswith("TOKEN"))]


def budget(results: dict[tuple[str, int], Sample], clients: int, latency: float) -> str:
    """What 0.9 of the bound at this c asks of the machine: its cores' CPU an op at that rate, less
    what the load generator and the fake took an op in LiteLLM's run (which has no database), is the
    most CPU an op a server could use, its database included, and reach it on this machine."""
    rate = 0.9 * clients / latency
    cores = os.cpu_count() or 1
    line = (f"budget c={clients}: 0.9 of the bound is {rate:.0f} ops/s, {cores} cores give "
            f"{cores * 1000 / rate:.1f} ms an op")
    litellm = results.get(("litellm", clients))
    if litellm:
        left = cores * 1000 / rate - litellm.other_ms
        line += (f"; the load generator and the fake took {litellm.other_ms:.1f} ms/op (LiteLLM's run), leaving "
                 f"{left:.1f} ms/op for a server and its database; LiteLLM's server used {litellm.cpu_ms:.1f}")
        for name in ("cg-embedded", "cg-full"):
            sample = results.get((name, clients))
            if sample:
                more = max(0.0, sample.other_ms - litellm.other_ms)  # its database, mostly
                line += f", {name} {sample.cpu_ms:.1f} (+ {more:.1f} more elsewhere)"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=2.0, help="the fake provider's seconds per call")
    parser.add_argument("--clients", default="100,500,1000")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each (target, c) runs")
    parser.add_argument("--litellm", help="path of a litellm executable (its own virtualenv)")
    parser.add_argument("--targets", default="litellm,cg-embedded,cg-full")
    parser.add_argument("--accounts", type=int, default=1,
                        help="creditgate: spread the clients over this many accounts (one member each)")
    args = parser.parse_args()
    wanted = args.targets.split(",")
    if "litellm" in wanted and not args.litellm:
        print("litellm: skipped (no --litellm PATH); no ratio to LiteLLM is printed")
        wanted.remove("litellm")
    counts = [int(c) for c in args.clients.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="cg-bench-inflight-"))
    fake = start_fake(args.latency)
    servers: dict[str, Server] = {}
    dbnames: dict[str, str | None] = {}
    tokens: dict[str, list[str]] = {}
    try:
        for name in wanted:
            if name == "litellm":
                servers[name] = start_litellm(args.litellm, fake, workdir)
                dbnames[name] = None
            else:
                full = name == "cg-full"
                # The web's bound of connections per process (creditgate/server.py, default 1000) is
                # raised above the largest c, so the bench measures the server, not the bound.
                # One account (one token) stands for the whole load here, so its fair shares (jobs
                # in flight, concurrent waits) are raised above the largest c too.
                limit = str(max(counts) + 100)
                servers[name] = start_creditgate(fake, workdir, full=full, procfile=True, warmup=2,
                                                 extra_env={"CREDITGATE_WEB_LIMIT_CONCURRENCY": limit,
                                                            "CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT": limit,
                                                            "CREDITGATE_ACCOUNT_WAITS": limit})
                dbnames[name] = (os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/"
                                                "cg_bench_paid").rsplit("/", 1)[1] if full else None)
                tokens[name] = tokens_of_accounts(servers[name], workdir, full=full, accounts=args.accounts)
        print(f"fake provider latency {args.latency:g} s, {args.seconds:g} s per case, creditgate's clients on "
              f"{args.accounts} account(s); load: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        results: dict[tuple[str, int], Sample] = {}
        for clients in counts:
            for name in wanted:  # targets interleaved at each c
                server = servers[name]
                if name == "litellm":
                    operation = one_chat
                else:
                    accounts = itertools.cycle(tokens[name])  # each client (connection) is one account's

                    async def operation(conn: Connection, accounts=accounts) -> None:
                        if conn.token is None:
                            conn.token = next(accounts)
                        await one_job(conn, conn.token)

                sample = measure(server, operation, clients, args.seconds, dbnames[name])
                results[(name, clients)] = sample
                bound = clients / args.latency
                line = (f"{name} c={clients}: {sample.rate:.1f} ops/s, {sample.rate / bound:.2f} of bound")
                litellm = results.get(("litellm", clients))
                if litellm and name != "litellm" and litellm.rate:
                    line += f", {sample.rate / litellm.rate:.2f}x LiteLLM"
                line += (f", median {sample.median_s:.2f} s, p95 {sample.p95_s:.2f} s, cpu {sample.cpu_ms:.1f} ms/op"
                         f", pg {sample.pg if dbnames[name] else '-'}, rss {sample.rss_mib:.0f} MiB"
                         f", host cpu {sample.host_busy:.0%}, rest {sample.other_ms:.1f} ms/op"
                         f", failed {sample.failed}" + (f" ({sample.reasons})" if sample.failed else ""))
                print(line, flush=True)
            print(budget(results, clients, args.latency), flush=True)
        return 0
    finally:
        for server in [*servers.values(), fake]:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
