"""creditgate's OpenAI-compatible /v1 beside LiteLLM's proxy, in front of the same fake provider, in one run.

Every target talks to bench_paid_jobs.py's fake OpenAI-compatible provider, which answers a chat
at once or after a latency L and, asked `"stream": true`, streams it (a role chunk, --tokens
content chunks, a finish chunk, the usage chunk when `stream_options.include_usage`, [DONE]; L
before the first content chunk, --pacing seconds between content chunks):

- `litellm`: LiteLLM's proxy (1 worker, its config as bench_paid_jobs.py writes it), installed in
  its own virtualenv:
      python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip install 'litellm[proxy]==1.108.7'
  (`--litellm PATH`; by default /work/litellm-venv/bin/litellm when it exists, or $BENCH_LITELLM);
- `cg-embedded`: creditgate's embedded default (SQLite, jobs in-process), the Procfile's web line
  with one process;
- `cg-full`: the production shape on PostgreSQL + Redis, the Procfile's web (2 processes), worker
  and housekeeping lines.
One operation is one POST /v1/chat/completions: to LiteLLM with its master key and model "bench",
to creditgate with a creditgate API key (made for the bench user at setup) and model "default".
A streamed operation asks `stream_options: {"include_usage": true}` and is read to [DONE]; it
counts only if its text is the fake's, whole, and its usage came. A failure (status, error event,
short stream, timeout after 60 s) is counted and printed, never retried.

The figures, each target measured in turn (targets interleaved within each figure), each printed
as one line per target with its ratio to LiteLLM measured in the same run:
  1. `c=8 L=0`: non-streamed chats per second with 8 clients and no provider latency;
  2. `c=N L=2s stream`: streamed chats in flight (--clients N, --latency L): ops/s, the fraction of
     the bound N/(L + (tokens-1) x pacing), p95, time to first token, peak PostgreSQL connections,
     peak RSS of the server's processes;
  3. `c=1 L=0.2s stream`: time to first token (TTFT: the first content chunk) and added latency
     (the whole stream minus the fake's own time, L + (tokens-1) x pacing), --ttft-latency;
  4. server CPU per operation (every process of the server, from /proc), in each line, and
     LiteLLM's over creditgate's in the summary (above 1.0: creditgate spends less).
Ratios are "x LiteLLM", where above 1.0 is better for creditgate (ops/s over LiteLLM's; for
CPU and latencies, LiteLLM's over creditgate's). The targets (printed met or not): at least 1.0x
LiteLLM on every figure, and a TTFT overhead no more than LiteLLM's.

At the end, creditgate's books are checked: the bench user's balance (available + held) must have
dropped by the sum of the credits_charged of the jobs its /v1 key made, no hold left, and those
jobs are counted against the operations the clients saw succeed. Linux only (/proc).

    .venv/bin/python bench/bench_v1.py [--latency 2] [--clients 100] [--seconds 10] [--tokens 50]
        [--pacing 0] [--ttft-latency 0.2] [--litellm PATH] [--targets litellm,cg-embedded,cg-full]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

# The sibling benchmarks' helpers (run as a script, bench/ is first on sys.path).
from bench_inflight import Peaks, watch
from bench_paid_jobs import (
    LITELLM_KEY,
    PYTHON,
    ROOT,
    Server,
    cpu_seconds,
    creditgate_env,
    start_creditgate,
    start_fake,
    start_litellm,
    stream_pieces,
)

# Separate from bench_paid_jobs' and bench_inflight's (a database dropped, a Redis db flushed at
# start), so the benches can run side by side.
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cg_bench_v1")
os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")

TIMEOUT = 60.0
MAX_TOKENS = 256  # asked of every chat: above --tokens, so the fake's answer is never cut
DEFAULT_LITELLM = "/work/litellm-venv/bin/litellm"


# --- The client: HTTP/1.1 on asyncio streams, nothing retried --------------------------------------


class Failure(Exception):
    """An operation that did not deliver what it should have."""


class Connection:
    """One keep-alive connection, opened at its first request. Any error closes it; the
    operation that met it fails (the next one opens a new connection)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _send(self, path: str, body: dict, headers: dict) -> tuple[int, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        payload = json.dumps(body).encode()
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(payload)}",
                "Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await self.writer.drain()
        assert self.reader is not None
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        return int(lines[0].split()[1]), fields

    async def _pieces(self, fields: dict):
        """The body as it comes (chunked), or whole (Content-Length)."""
        assert self.reader is not None
        if fields.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16):
                yield (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")
        else:
            yield await self.reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            self.close()

    async def post(self, path: str, body: dict, headers: dict) -> tuple[int, dict, bytes]:
        status, fields = await self._send(path, body, headers)
        data = b"".join([piece async for piece in self._pieces(fields)])
        return status, fields, data

    async def stream(self, path: str, body: dict, headers: dict, began: float) -> StreamRead:
        """POST and read the Server-Sent Events to [DONE]: when the first content came, the text."""
        status, fields = await self._send(path, body, headers)
        read = StreamRead(status=status, fields=fields)
        buffer = b""
        async for piece in self._pieces(fields):
            if status != 200:
                read.error_body += piece
                continue
            buffer += piece
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data:"):
                        read.data(line[5:].strip(), began)
        return read

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class StreamRead:
    status: int
    fields: dict
    error_body: bytes = b""
    ttft: float | None = None
    text: list[str] = field(default_factory=list)
    usage: dict | None = None
    cost: dict | None = None  # creditgate's `creditgate` object of the last chunk
    error: str = ""
    done: bool = False

    def data(self, data: bytes, began: float) -> None:
        if data == b"[DONE]":
            self.done = True
            return
        chunk = json.loads(data)
        if "error" in chunk:
            self.error = str(chunk["error"])[:100]
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                if self.ttft is None:
                    self.ttft = time.monotonic() - began
                self.text.append(content)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("creditgate"):
            self.cost = chunk["creditgate"]


@dataclass
class Target:
    name: str
    server: Server
    model: str
    key: str
    dbname: str | None = None
    account_total_before: int = 0  # available + held, after setup
    key_id: str = ""
    # A non-streamed chat's text: both ask the fake for a completion, not streamed ("Hello there.").
    chat_text: str = "Hello there."


@dataclass
class Done:
    """What one successful operation gave: its time, its TTFT (streamed), what it was charged."""

    seconds: float
    ttft: float | None = None
    charged: int = 0


def chat_body(model: str, *, stream: bool) -> dict:
    body: dict = {"model": model, "messages": [{"role": "user", "content": "Say hello."}],
                  "max_completion_tokens": MAX_TOKENS}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


async def chat(conn: Connection, target: Target) -> Done:
    began = time.monotonic()
    status, fields, data = await conn.post("/v1/chat/completions", chat_body(target.model, stream=False),
                                           {"Authorization": f"Bearer {target.key}"})
    if status != 200:
        raise Failure(f"answered {status}: {data[:80]!r}")
    answer = json.loads(data)
    if answer["choices"][0]["message"]["content"] != target.chat_text or not answer.get("usage"):
        raise Failure(f"unexpected answer {data[:80]!r}")
    return Done(time.monotonic() - began, charged=int(fields.get("x-creditgate-credits-charged", 0)))


def streamed(tokens: int) -> Callable[[Connection, Target], Awaitable[Done]]:
    expected = "".join(stream_pieces(tokens))

    async def operation(conn: Connection, target: Target) -> Done:
        began = time.monotonic()
        read = await conn.stream("/v1/chat/completions", chat_body(target.model, stream=True),
                                 {"Authorization": f"Bearer {target.key}"}, began)
        if read.status != 200:
            raise Failure(f"answered {read.status}: {read.error_body[:80]!r}")
        if read.error:
            raise Failure(f"error event {read.error}")
        if not read.done:
            raise Failure("no [DONE]")
        if "".join(read.text) != expected:
            raise Failure(f"text of {len(read.text)} pieces, not the fake's {tokens}")
        if not read.usage or read.usage.get("completion_tokens") != tokens:
            raise Failure(f"usage {read.usage}")
        return Done(time.monotonic() - began, ttft=read.ttft,
                    charged=int((read.cost or {}).get("credits_charged", 0)))

    return operation


# --- One measurement ------------------------------------------------------------------------------------


@dataclass
class Sample:
    done: list[Done]
    elapsed: float
    cpu_ms: float
    failed: int
    reasons: str
    rss_mib: float
    pg: int
    client_cpu_ms: float  # this process's (the clients'), per operation: the load shares the same cores

    @property
    def rate(self) -> float:
        return len(self.done) / self.elapsed

    def pct(self, what: str, q: float) -> float:
        values = sorted(getattr(d, what) for d in self.done if getattr(d, what) is not None)
        return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


async def _clients(target: Target, operation, clients: int, seconds: float) -> tuple[list[Done], int, Counter]:
    done: list[Done] = []
    failed = 0
    reasons: Counter = Counter()
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal failed
        conn = Connection(target.server.port)
        try:
            while time.monotonic() < stop:
                try:
                    done.append(await asyncio.wait_for(operation(conn, target), TIMEOUT))
                except (TimeoutError, Failure, OSError, asyncio.IncompleteReadError, ValueError, KeyError) as exc:
                    failed += 1
                    reasons[(type(exc).__name__ + ": " + str(exc))[:70]] += 1
                    conn.close()
        finally:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return done, failed, reasons


def measure(target: Target, operation, clients: int, seconds: float) -> Sample:
    peaks = Peaks()
    watcher = threading.Thread(target=watch, args=(target.server, target.dbname, peaks), daemon=True)
    cpu_before, started, client_before = cpu_seconds(target.server.pids()), time.monotonic(), time.process_time()
    watcher.start()
    done, failed, reasons = asyncio.run(_clients(target, operation, clients, seconds))
    client_cpu = time.process_time() - client_before
    elapsed = time.monotonic() - started  # operations started before the end may finish after it
    peaks.stop.set()
    watcher.join()
    cpu = cpu_seconds(target.server.pids()) - cpu_before
    return Sample(done=done, elapsed=elapsed, cpu_ms=cpu / max(len(done), 1) * 1000, failed=failed,
                  reasons=", ".join(f"{n}x {reason}" for reason, n in reasons.most_common(2)),
                  rss_mib=peaks.rss_mib, pg=peaks.pg, client_cpu_ms=client_cpu / max(len(done), 1) * 1000)


def fake_config(fake: Server, **config) -> None:
    async def send() -> None:
        conn = Connection(fake.port)
        try:
            status, _, _ = await conn.post("/bench/config", config, {})
            assert status == 204, status
        finally:
            conn.close()

    asyncio.run(send())


# --- creditgate's key and books -----------------------------------------------------------------------

KEY_SETUP = """
from django.contrib.auth import get_user_model
from creditgate.credits import services
user = get_user_model().objects.get(username="bench")
member = services.member_for_user(user=user)
row, secret = services.api_key_create(actor=user, member=member, name="bench v1")
account = services.account_for_user(user=user)
print("KEY", row.pk, secret, account.available + account.held)
"""

BOOKS = """
from django.db.models import Count, Q, Sum
from creditgate.credits import services
from creditgate.generation.models import Job
from django.contrib.auth import get_user_model
account = services.account_for_user(user=get_user_model().objects.get(username="bench"))
jobs = Job.objects.filter(api_key_id={key_id})
sums = jobs.aggregate(n=Count("id"), charged=Sum("credits_charged"),
                      charged_n=Count("id", filter=Q(credits_charged__gt=0)),
                      succeeded=Count("id", filter=Q(status="succeeded")))
open_ = jobs.exclude(status__in=("succeeded", "partial", "failed")).aggregate(n=Count("id"), held=Sum("credits_held"))
print("BOOKS", account.available + account.held, account.held, sums["n"], sums["charged"] or 0, sums["charged_n"],
      sums["succeeded"], open_["n"], open_["held"] or 0)
"""


def manage_shell(name: str, workdir: Path, code: str) -> str:
    env = creditgate_env(workdir / name, full=name == "cg-full")
    return subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout


def start_target(name: str, fake: Server, workdir: Path, litellm: str | None, limit: int, tokens: int) -> Target:
    if name == "litellm":
        assert litellm
        return Target(name, start_litellm(litellm, fake, workdir), "bench", LITELLM_KEY)
    full = name == "cg-full"
    # One account and one API key stand for the whole load, so its fair shares (jobs in flight per
    # account and per key, waits) and the web's bound of connections are raised above c: the bench
    # measures the server, not those bounds (bench_inflight.py does the same).
    server = start_creditgate(fake, workdir, full=full, procfile=True, warmup=2,
                              extra_env={"CREDITGATE_WEB_LIMIT_CONCURRENCY": str(limit),
                                         "CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT": str(limit),
                                         "CREDITGATE_API_KEY_JOBS_IN_FLIGHT": str(limit),
                                         "CREDITGATE_ACCOUNT_WAITS": str(limit),
                                         "CREDITGATE_API_KEY_WAITS": str(limit)})
    line = next(x for x in manage_shell(name, workdir, KEY_SETUP).splitlines() if x.startswith("KEY "))
    _, key_id, secret, total = line.split()
    dbname = os.environ["BENCH_DATABASE_URL"].rsplit("/", 1)[1] if full else None
    return Target(name, server, "default", secret, dbname, int(total), key_id)


# --- The run ------------------------------------------------------------------------------------------------


def ratio(ours: float, litellm: float | None, *, lower_is_better: bool = False) -> float | None:
    """creditgate's figure as a multiple of LiteLLM's, above 1.0 when creditgate does better."""
    if litellm is None:
        return None
    if lower_is_better:
        return litellm / ours if ours > 0 else float("inf")
    return ours / litellm if litellm > 0 else float("inf")


def xs(value: float | None) -> str:
    return f"{value:.2f}x LiteLLM" if value is not None else "no LiteLLM"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=2.0, help="the fake's seconds to the first token (figure 2)")
    parser.add_argument("--clients", default="100", help="concurrencies of the in-flight figure, e.g. 100,500")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each (figure, target) runs")
    parser.add_argument("--tokens", type=int, default=50, help="content chunks in each streamed answer")
    parser.add_argument("--pacing", type=float, default=0.0, help="the fake's seconds between content chunks")
    parser.add_argument("--ttft-latency", type=float, default=0.2, help="the fake's latency for figure 3 (c=1)")
    parser.add_argument("--rate-clients", type=int, default=8, help="clients of figure 1 (L=0, not streamed)")
    parser.add_argument("--litellm", default=os.environ.get("BENCH_LITELLM") or
                        (DEFAULT_LITELLM if os.path.exists(DEFAULT_LITELLM) else None),
                        help="path of a litellm executable (its own virtualenv)")
    parser.add_argument("--targets", default="litellm,cg-embedded,cg-full")
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs and databases (printed path)")
    args = parser.parse_args()
    wanted = args.targets.split(",")
    if "litellm" in wanted and not args.litellm:
        print("litellm: skipped (no --litellm PATH); no ratio to LiteLLM is printed")
        wanted.remove("litellm")
    counts = [int(c) for c in args.clients.split(",")]
    own_time = (args.tokens - 1) * args.pacing  # the fake's time from the first content chunk to the last

    workdir = Path(tempfile.mkdtemp(prefix="cg-bench-v1-"))
    fake = start_fake(0.0, tokens=args.tokens, pacing=args.pacing)
    targets: dict[str, Target] = {}
    seen: dict[str, list[Done]] = {}  # every successful operation, warm-ups included, for the books
    failures: Counter = Counter()
    try:
        for name in wanted:
            targets[name] = start_target(name, fake, workdir, args.litellm, max(counts) + 100, args.tokens)
        # Warm-up, not measured: each target's first chats (imports, connections, caches).
        for target in targets.values():
            for operation in (chat, streamed(args.tokens)):
                warm = measure(target, operation, 2, 1.0)
                seen.setdefault(target.name, []).extend(warm.done)
                failures[target.name] += warm.failed
                if warm.failed:
                    print(f"{target.name} warm-up: {warm.failed} failed ({warm.reasons})")
        print(f"fake provider: {args.tokens} tokens a stream, pacing {args.pacing:g} s; {args.seconds:g} s per case; "
              f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        results: dict[tuple[str, str], Sample] = {}

        def run(figure: str, operation, clients: int) -> None:
            for name, target in targets.items():  # targets interleaved within each figure
                sample = measure(target, operation, clients, args.seconds)
                results[(figure, name)] = sample
                seen[name].extend(sample.done)
                failures[name] += sample.failed
                yield_line(figure, name, sample)

        def yield_line(figure: str, name: str, sample: Sample) -> None:
            litellm = results.get((figure, "litellm")) if name != "litellm" else None
            label = f"{name} v1" if name != "litellm" else name
            parts = [f"{sample.rate:.1f} ops/s"]
            if figure.startswith("inflight"):
                clients = int(figure.split()[1])
                parts.append(f"{sample.rate / (clients / (args.latency + own_time)):.2f} of bound")
            if litellm:
                parts.append(xs(ratio(sample.rate, litellm.rate)))
            if figure.startswith("inflight"):
                parts.append(f"p50 {sample.pct('seconds', 0.5):.2f} s, p95 {sample.pct('seconds', 0.95):.2f} s, "
                             f"ttft p50 {sample.pct('ttft', 0.5):.2f} s")
            else:
                parts.append(f"p50 {sample.pct('seconds', 0.5) * 1000:.1f} ms, "
                             f"p95 {sample.pct('seconds', 0.95) * 1000:.1f} ms")
            if figure.startswith("ttft"):
                parts.append(f"ttft p50 {sample.pct('ttft', 0.5) * 1000:.1f} ms")
            if figure.startswith("ttft"):
                ttft_over = sample.pct("ttft", 0.5) - args.ttft_latency
                added = sample.pct("seconds", 0.5) - args.ttft_latency - own_time
                parts.append(f"ttft overhead {ttft_over * 1000:.1f} ms, added latency {added * 1000:.1f} ms")
            parts.append(f"cpu {sample.cpu_ms:.1f} ms/op" + (
                f" ({xs(ratio(sample.cpu_ms, litellm.cpu_ms, lower_is_better=True))})" if litellm else ""))
            if figure.startswith("inflight"):
                parts.append(f"pg {sample.pg if targets[name].dbname else '-'}, rss {sample.rss_mib:.0f} MiB, "
                             f"client cpu {sample.client_cpu_ms:.1f} ms/op")
            parts.append(f"failures {sample.failed}" + (f" ({sample.reasons})" if sample.failed else ""))
            print(f"{label} {titles[figure]}: " + ", ".join(parts), flush=True)

        titles = {"rate": f"c={args.rate_clients} L=0 chat", "ttft": f"c=1 L={args.ttft_latency:g}s stream"}
        fake_config(fake, latency=0.0)
        run("rate", chat, args.rate_clients)
        fake_config(fake, latency=args.latency)
        for clients in counts:
            titles[f"inflight {clients}"] = f"c={clients} L={args.latency:g}s stream"
            run(f"inflight {clients}", streamed(args.tokens), clients)
        fake_config(fake, latency=args.ttft_latency)
        run("ttft", streamed(args.tokens), 1)

        # The targets, for creditgate against LiteLLM measured in this run.
        print("\ntargets (creditgate /v1 against LiteLLM, this run):")
        verdicts: list[bool] = []

        def verdict(label: str, value: float | None, detail: str) -> None:
            if value is None:
                print(f"  {label}: not measured (no LiteLLM), {detail}")
                return
            verdicts.append(value >= 1.0)
            print(f"  {label}: {value:.2f}x LiteLLM (target >= 1.0: {'met' if value >= 1.0 else 'NOT met'}), {detail}")

        for name in targets:
            if name == "litellm":
                continue
            for figure, title in titles.items():
                ours, theirs = results[(figure, name)], results.get((figure, "litellm"))
                if figure != "ttft":
                    verdict(f"{name} {title} ops/s", ratio(ours.rate, theirs.rate if theirs else None),
                            f"{ours.rate:.1f} against {theirs.rate:.1f}" if theirs else f"{ours.rate:.1f}")
                    verdict(f"{name} {title} cpu/op", ratio(ours.cpu_ms, theirs.cpu_ms if theirs else None,
                                                            lower_is_better=True),
                            f"{ours.cpu_ms:.1f} ms against {theirs.cpu_ms:.1f} ms" if theirs else f"{ours.cpu_ms:.1f}")
                else:
                    ttft = ours.pct("ttft", 0.5) - args.ttft_latency
                    added = ours.pct("seconds", 0.5) - args.ttft_latency - own_time
                    if theirs is None:
                        print(f"  {name} ttft overhead {ttft * 1000:.1f} ms, added {added * 1000:.1f} ms (no LiteLLM)")
                        continue
                    lttft = theirs.pct("ttft", 0.5) - args.ttft_latency
                    ladded = theirs.pct("seconds", 0.5) - args.ttft_latency - own_time
                    met = ttft <= lttft
                    verdicts.append(met)
                    print(f"  {name} {title} ttft overhead (p50 - L): {ttft * 1000:.1f} ms against LiteLLM's "
                          f"{lttft * 1000:.1f} ms (target <= LiteLLM's: {'met' if met else 'NOT met'})")
                    verdict(f"{name} {title} added latency", ratio(added, ladded, lower_is_better=True),
                            f"{added * 1000:.1f} ms against LiteLLM's {ladded * 1000:.1f} ms")
        if verdicts:
            print(f"  {sum(verdicts)} of {len(verdicts)} targets met")

        # creditgate's books: every job charged, the balance down by what the jobs say.
        print("\ncharges:")
        ok = True
        for name, target in targets.items():
            print(f"  {name}: {len(seen[name])} operations succeeded, {failures[name]} failed (warm-ups included)")
            if name == "litellm":
                continue
            fields = next(x for x in manage_shell(name, workdir, BOOKS.format(key_id=target.key_id)).splitlines()
                          if x.startswith("BOOKS "))
            total, held, jobs, charged, charged_n, succeeded, open_, open_held = (int(v) for v in fields.split()[1:])
            drop = target.account_total_before - total
            client_charged = sum(d.charged for d in seen[name])
            # Every settled job's charge taken from the balance, and nothing else: what is still held
            # is exactly the holds of the jobs not final yet (a stream cut by a fault, which the
            # sweep settles from its checkpoint once its lease lapses; no beat runs in this bench).
            books_ok = drop == charged and held == open_held
            ok &= books_ok and open_ == 0
            print(f"    {jobs} /v1 jobs, {succeeded} succeeded, {charged_n} charged; "
                  f"balance dropped by {drop} credits, the jobs' credits_charged sum to {charged} "
                  f"(the clients read {client_charged}): "
                  f"{'consistent' if books_ok else 'NOT consistent'}; held now {held}"
                  + (f", the holds of {open_} jobs not final yet (NOT settled)" if open_ else ""))
            if succeeded != len(seen[name]):
                print(f"    note: {succeeded} jobs succeeded, the clients saw {len(seen[name])} succeed")
        return 0 if ok else 1
    finally:
        for target in targets.values():
            target.server.stop()
        fake.stop()
        if args.keep:
            print(f"logs and databases kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
