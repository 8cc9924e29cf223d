"""A paid text job end to end, beside what proxy users would run instead, in one interleaved run.

Every target talks to the same minimal OpenAI-compatible fake provider, which answers at once:

- `direct`: the fake provider itself (the floor);
- `litellm`: LiteLLM's proxy in front of it, when `--litellm PATH` names a `litellm` executable
  installed in its own virtualenv (not a dependency of this project):
      python3 -m venv /work/litellm-venv && /work/litellm-venv/bin/pip install 'litellm[proxy]==1.108.7'
      .venv/bin/python bench/bench_paid_jobs.py --litellm /work/litellm-venv/bin/litellm
- `cg-embedded`: creditgate on the embedded default (SQLite, jobs in-process), gunicorn (1 uvicorn
  worker, the production server configuration: creditgate/gunicorn_conf.py, creditgate.asgi);
- `cg-full`: creditgate on PostgreSQL + Redis, gunicorn (2 uvicorn workers) + a Celery worker (4 processes).
For creditgate one operation is a paid job: POST /api/v1/text/generations/ and then either polling
GET /api/v1/jobs/{id}/ until it is final (`poll`) or one POST with `Prefer: wait=30` (`wait`; should
the wait end first, GET /api/v1/jobs/{id}/?wait=30 long-polls).

For each target, mode and concurrency (1 and 8 clients) it prints operations/s, median and p95
latency and the server's CPU per operation (every process of the server, from /proc), as
min/median/max over the rounds (targets interleaved within each round), then the ratios the
issue asks for: creditgate jobs/s over LiteLLM's requests/s at c=8, creditgate over direct, the
latency each adds at c=1 over direct, and creditgate's CPU per job. Linux only (/proc).

    .venv/bin/python bench/bench_paid_jobs.py [--rounds 3] [--seconds 8] [--litellm PATH]
        [--targets direct,litellm,cg-embedded,cg-full]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
FINAL = {"succeeded", "partial", "failed"}
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1764500000, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}).encode()
KEY = "Zm9yLWJlbmNobWFya3Mtb25seS0zMi1ieXRlcy1rZXk="
LITELLM_KEY = "sk-bench-0123456789abcdef0123456789abcdef"


# --- The fake provider: a few lines of asyncio, so it is never the bottleneck --------------------


def _stream_body(tokens: int, *, usage: bool) -> list[bytes]:
    """A streamed completion as OpenAI writes it, one SSE event per item: a role chunk, `tokens`
    content chunks of one token each, a finish chunk, the usage chunk when asked, [DONE]."""
    def event(delta: dict | None, finish: str | None = None, **extra) -> bytes:
        chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764500000, "model": "bench",
                 "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": piece}) for piece in stream_pieces(tokens)]
    events.append(event({}, "stop"))
    if usage:
        events.append(event(None, usage={"prompt_tokens": 9, "completion_tokens": tokens,
                                         "total_tokens": 9 + tokens}))
    events.append(b"data: [DONE]\n\n")
    return events


def stream_pieces(tokens: int) -> list[str]:
    """The content pieces of a streamed answer (what a client should read back, joined)."""
    return [" word" if i else "Hello" for i in range(tokens)]


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _serve_fake(port: int, latency: float = 0.0, tokens: int = 50, pacing: float = 0.0) -> None:
    """Answers every request with COMPLETION, after `latency` seconds (a real provider takes 1-60 s).
    A request with `"stream": true` gets Server-Sent Events instead (_stream_body): `latency` before
    the first content chunk, then `pacing` seconds before each next one (0: all at once).
    POST /bench/config {"latency", "tokens", "pacing"} changes these for the requests that follow
    (a benchmark's figures need different latencies from the same servers)."""
    config = {"latency": latency, "tokens": tokens, "pacing": pacing}
    bodies: dict[tuple[int, bool], list[bytes]] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"POST /bench/config "):
                    config.update({k: v for k, v in json.loads(body).items() if k in config})
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                    await writer.drain()
                    continue
                asked = json.loads(body) if b'"stream"' in body else {}
                if asked.get("stream"):
                    await _stream(writer, asked, config, bodies)
                    continue
                if config["latency"]:
                    await asyncio.sleep(config["latency"])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: req-bench\r\n"
                             b"Content-Length: " + str(len(COMPLETION)).encode() + b"\r\n\r\n" + COMPLETION)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


async def _stream(writer: asyncio.StreamWriter, asked: dict, config: dict,
                  bodies: dict[tuple[int, bool], list[bytes]]) -> None:
    tokens, pacing = int(config["tokens"]), float(config["pacing"])
    usage = bool((asked.get("stream_options") or {}).get("include_usage"))
    events = bodies.get((tokens, usage))
    if events is None:
        events = bodies[(tokens, usage)] = _stream_body(tokens, usage=usage)
    # The headers at once (a provider answers 200 before it writes), the first token after `latency`.
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nx-request-id: req-bench\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(events[0]))
    await writer.drain()
    if config["latency"]:
        await asyncio.sleep(config["latency"])
    if not pacing:
        writer.write(b"".join(_chunked(e) for e in events[1:]) + b"0\r\n\r\n")
    else:
        for i, event in enumerate(events[1:tokens + 1]):
            if i:
                await asyncio.sleep(pacing)
            writer.write(_chunked(event))
            await writer.drain()
        writer.write(b"".join(_chunked(e) for e in events[tokens + 1:]) + b"0\r\n\r\n")
    await writer.drain()


# --- Processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and all their descendants, living or reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields_ = raw[raw.rindex(")") + 2:].split()
        stats[int(entry)], parents[int(entry)] = fields_, int(fields_[1])
    tree, frontier = set(pids), list(pids)
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        if pid in stats:  # utime, stime, cutime, cstime
            total += sum(int(v) for v in stats[pid][11:15])
    return total / ticks


@dataclass
class Server:
    name: str
    port: int
    procs: list[subprocess.Popen] = field(default_factory=list)
    token: str = ""

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_fake(latency: float = 0.0, *, tokens: int = 50, pacing: float = 0.0) -> Server:
    port = free_port()
    proc = subprocess.Popen([PYTHON, __file__, "--serve-fake-provider", str(port), "--fake-latency", str(latency),
                             "--fake-tokens", str(tokens), "--fake-pacing", str(pacing)])
    wait_for_port(port)
    return Server("direct", port, [proc])


def start_litellm(binary: str, fake: Server, workdir: Path) -> Server:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n"
        f"      api_base: http://127.0.0.1:{fake.port}/v1\n      api_key: bench\n")
    # A master key (no database: it is checked in memory), as LiteLLM refuses to start without one.
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "LITELLM_MASTER_KEY": LITELLM_KEY}
    with open(workdir / "litellm.log", "w") as log:
        proc = subprocess.Popen([binary, "--config", str(config), "--port", str(port), "--num_workers", "1"],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    wait_for_port(port, timeout=180)
    return Server("litellm", port, [proc])


def creditgate_env(workdir: Path, *, full: bool) -> dict:
    env = {**os.environ, "DEBUG": "false", "SECRET_KEY": "bench-only-secret-key", "ALLOWED_HOSTS": "127.0.0.1",
           "CREDITGATE_ENCRYPTION_KEYS": KEY, "CREDITGATE_SANDBOX": "false", "LOG_LEVEL": "WARNING",
           # No rate limit, as LiteLLM's proxy has none (a huge one instead would make every job read
           # the account's jobs of the whole period under its row's lock).
           "CREDITGATE_VAR_DIR": str(workdir / "var"), "CREDITGATE_GENERATION_RATE": "off",
           "CREDITGATE_SECURE_SSL_REDIRECT": "false", "CREDITGATE_SECURE_COOKIES": "false"}
    if full:
        env.update(DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cg_bench_paid"),
                   REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
                   CREDITGATE_JOBS_BACKEND="celery")
    else:
        env.update(DATABASE_URL=f"sqlite:///{workdir / 'var' / 'bench.sqlite3'}", CREDITGATE_JOBS_BACKEND="inprocess")
        env.pop("REDIS_URL", None)
    return env


SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from creditgate.catalog.models import IntegrationProvider
from creditgate.catalog.ai_config_cache import ai_config_invalidate
from creditgate.credits import services
provider = IntegrationProvider.objects.get(provider_id="openai")
provider.set_api_key("bench-key")
provider.base_url = "http://127.0.0.1:{port}/v1"
provider.is_active = True
provider.save()
ai_config_invalidate()
user, _ = get_user_model().objects.get_or_create(username="bench")
services.credits_grant(account=services.account_for_user(user=user), amount=10**11, reason="benchmark")
print("TOKEN", Token.objects.get_or_create(user=user)[0].key)
"""


def procfile_processes(env: dict, *, lines: tuple[str, ...], log) -> list[subprocess.Popen]:
    """The Procfile's lines named, started as a deployment would (through a shell, with the
    virtualenv's bin first on PATH), so a benchmark measures the production recipe as written."""
    procfile = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())
    env = {**env, "PATH": f"{Path(PYTHON).parent}:{env.get('PATH', '')}"}
    return [subprocess.Popen(["bash", "-c", f"exec {procfile[name]}"], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT) for name in lines]


def start_creditgate(fake: Server, workdir: Path, *, full: bool, procfile: bool = False,
                     extra_env: dict | None = None, warmup: int = 20) -> Server:
    """creditgate in front of `fake`: gunicorn (and a Celery worker when `full`) as this benchmark
    has always run it, or with `procfile` the Procfile's own lines (web, worker, housekeeping; for
    the embedded default, web alone with one process)."""
    name = "cg-full" if full else "cg-embedded"
    workdir = workdir / name
    (workdir / "var").mkdir(parents=True, exist_ok=True)
    env = {**creditgate_env(workdir, full=full), **(extra_env or {})}
    if full:
        import psycopg

        admin = env["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
        dbname = env["DATABASE_URL"].rsplit("/", 1)[1]
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{dbname}"')
        subprocess.run(["redis-cli", "-u", env["REDIS_URL"], "flushdb"], check=True, capture_output=True)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", SETUP.format(port=fake.port)], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    token = next(line.split()[1] for line in out.splitlines() if line.startswith("TOKEN"))
    port = free_port()
    workers = ["-w", "2"] if full else ["-w", "1"]
    with open(workdir / "server.log", "w") as log:  # each child keeps its own copy of the descriptor
        if procfile:
            env = {"WEB_CONCURRENCY": "2" if full else "1", **env, "PORT": str(port)}
            procs = procfile_processes(env, lines=("web", "worker", "housekeeping") if full else ("web",), log=log)
        else:
            procs = [subprocess.Popen([PYTHON, "-m", "gunicorn", "-c", "python:creditgate.gunicorn_conf",
                                       "creditgate.asgi", *workers, "-b", f"127.0.0.1:{port}", "--keep-alive", "30"],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)]
        if full and not procfile:
            procs.append(subprocess.Popen([PYTHON, "-m", "celery", "-A", "creditgate", "worker", "--concurrency=4",
                                           "--loglevel=WARNING", "--without-heartbeat", "--without-gossip",
                                           "--without-mingle"], cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT))
    wait_for_port(port)
    server = Server(name, port, procs, token)
    # Warm up every worker process (imports, connections) before anything is measured.
    for _ in range(warmup):
        one_job(_Client(port), server.token, wait=True)
    return server


# --- Clients -----------------------------------------------------------------------------------


class _Client:
    """One keep-alive HTTP connection, reopened if the server closed it."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=payload, headers=hdrs)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, data
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def one_chat(client: _Client, model: str) -> None:
    status, data = client.request("POST", "/v1/chat/completions",
                                  {"model": model, "messages": [{"role": "user", "content": "Say hello."}],
                                   "max_completion_tokens": 16}, {"Authorization": f"Bearer {LITELLM_KEY}"})
    if status != 200:
        raise RuntimeError(f"chat completion answered {status}: {data[:300]!r}")


def one_job(client: _Client, token: str, *, wait: bool) -> None:
    auth = {"Authorization": f"Token {token}"}
    status, data = client.request("POST", "/api/v1/text/generations/", {"prompt": "Say hello.", "max_tokens": 16},
                                  {**auth, **({"Prefer": "wait=30"} if wait else {})})
    if status not in (200, 201, 202):
        raise RuntimeError(f"POST answered {status}: {data[:200]!r}")
    job = json.loads(data)
    delay = 0.002
    while job["status"] not in FINAL:
        if wait:
            status, data = client.request("GET", f"/api/v1/jobs/{job['id']}/?wait=30", headers=auth)
        else:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            status, data = client.request("GET", f"/api/v1/jobs/{job['id']}/", headers=auth)
        job = json.loads(data)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['status']}: {job.get('error')}")


@dataclass
class Sample:
    rate: float
    median_ms: float
    p95_ms: float
    cpu_ms: float


def measure(server: Server, operation, clients: int, seconds: float) -> Sample:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = time.monotonic() + 0.3
    stop = start + seconds

    def run(i: int) -> None:
        client = _Client(server.port)
        while time.monotonic() < start:
            time.sleep(0.001)
        try:
            while time.monotonic() < stop:
                began = time.perf_counter()
                operation(client)
                latencies[i].append(time.perf_counter() - began)
        except BaseException as exc:  # noqa: BLE001 - reported after the round
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    cpu_before = cpu_seconds(server.pids())
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = cpu_seconds(server.pids()) - cpu_before
    if errors:
        raise RuntimeError(f"{server.name}: {errors[0]}") from errors[0]
    done = sorted(x for per in latencies for x in per)
    if not done:
        raise RuntimeError(f"{server.name}: no operation finished")
    return Sample(rate=len(done) / seconds, median_ms=statistics.median(done) * 1000,
                  p95_ms=done[min(len(done) - 1, int(len(done) * 0.95))] * 1000, cpu_ms=cpu / len(done) * 1000)


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return "/".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--litellm", help="path of a litellm executable (its own virtualenv)")
    parser.add_argument("--targets", default="direct,litellm,cg-embedded,cg-full")
    parser.add_argument("--serve-fake-provider", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fake-latency", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--fake-tokens", type=int, default=50, help=argparse.SUPPRESS)
    parser.add_argument("--fake-pacing", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake_provider:
        asyncio.run(_serve_fake(args.serve_fake_provider, args.fake_latency, args.fake_tokens, args.fake_pacing))
        return 0

    wanted = args.targets.split(",")
    if "direct" not in wanted:  # every figure is relative to it (the ratios below divide by it)
        print("direct: measured anyway, as the baseline")
        wanted.insert(0, "direct")
    if "litellm" in wanted and not args.litellm:
        print("litellm: skipped (no --litellm PATH)")
        wanted.remove("litellm")
    workdir = Path(tempfile.mkdtemp(prefix="cg-bench-paid-"))
    servers: dict[str, Server] = {}
    fake = start_fake()
    servers["direct"] = fake
    try:
        if "litellm" in wanted:
            servers["litellm"] = start_litellm(args.litellm, fake, workdir)
        if "cg-embedded" in wanted:
            servers["cg-embedded"] = start_creditgate(fake, workdir, full=False)
        if "cg-full" in wanted:
            servers["cg-full"] = start_creditgate(fake, workdir, full=True)

        cases: list[tuple[str, Server, Callable[[_Client], None]]] = []  # (label, server, operation)
        for name in wanted:
            server = servers[name]
            if name == "direct":
                cases.append(("direct", server, lambda c: one_chat(c, "bench")))
            elif name == "litellm":
                cases.append(("litellm", server, lambda c: one_chat(c, "bench")))
            else:
                cases.append((f"{name} poll", server, partial(one_job, token=server.token, wait=False)))
                cases.append((f"{name} wait", server, partial(one_job, token=server.token, wait=True)))
        results: dict[tuple[str, int], list[Sample]] = {}
        print(f"{args.rounds} rounds of {args.seconds:g} s per case, targets interleaved; load: "
              f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}", flush=True)
        for round_ in range(1, args.rounds + 1):
            for clients in (1, 8):
                for label, server, operation in cases:
                    sample = measure(server, operation, clients, args.seconds)
                    results.setdefault((label, clients), []).append(sample)
                    print(f"  round {round_} c={clients} {label:18} {sample.rate:8.1f}/s"
                          f"  median {sample.median_ms:7.2f} ms  p95 {sample.p95_ms:7.2f} ms"
                          f"  cpu {sample.cpu_ms:6.2f} ms/op", flush=True)

        print(f"\nmin/median/max over {args.rounds} rounds (load now {os.getloadavg()[0]:.2f}):")
        print(f"{'case':22} {'ops/s':>22} {'median ms':>20} {'p95 ms':>20} {'server cpu ms/op':>20}")
        for (label, clients), samples in results.items():
            print(f"{label + f' c={clients}':22} {spread([s.rate for s in samples]):>22} "
                  f"{spread([s.median_ms for s in samples], '{:.2f}'):>20} "
                  f"{spread([s.p95_ms for s in samples], '{:.2f}'):>20} "
                  f"{spread([s.cpu_ms for s in samples], '{:.2f}'):>20}")

        def med(label: str, clients: int, attr: str) -> float | None:
            samples = results.get((label, clients))
            return statistics.median(getattr(s, attr) for s in samples) if samples else None

        def per_round(label: str, clients: int, attr: str) -> list[float]:
            return [getattr(x, attr) for x in results.get((label, clients), [])]

        print("\nratios per round (min/median/max over the rounds; each ratio within one round):")
        for name in ("cg-embedded", "cg-full"):
            for mode in ("poll", "wait"):
                label = f"{name} {mode}"
                if (label, 8) not in results:
                    continue
                for clients in (1, 8):
                    cg = per_round(label, clients, "rate")
                    # zip(strict=False): a round whose case failed is missing from one side only
                    over_direct = [a / b for a, b in zip(cg, per_round("direct", clients, "rate"), strict=False)]
                    parts = [f"over direct {spread(over_direct, '{:.3f}')}"]
                    if ("litellm", clients) in results:
                        over_litellm = [a / b for a, b in zip(cg, per_round("litellm", clients, "rate"), strict=False)]
                        parts.append(f"over LiteLLM {spread(over_litellm, '{:.3f}')}")
                    print(f"  {label:18} jobs/s c={clients}: " + ", ".join(parts))
                direct_ms = per_round("direct", 1, "median_ms")
                added = [a - b for a, b in zip(per_round(label, 1, "median_ms"), direct_ms, strict=False)]
                line = f"  {label:18} added latency c=1 (median - direct's) {spread(added)} ms"
                if ("litellm", 1) in results:
                    ladded = [a - b for a, b in zip(per_round("litellm", 1, "median_ms"), direct_ms, strict=False)]
                    line += f"; LiteLLM adds {spread(ladded)} ms"
                print(line)

        print("\nratios (medians):")
        direct1, direct8 = med("direct", 1, "median_ms"), med("direct", 8, "rate")
        assert direct1 is not None and direct8 is not None  # direct is always measured (see `wanted`)
        litellm8, litellm1 = med("litellm", 8, "rate"), med("litellm", 1, "median_ms")
        for name in ("cg-embedded", "cg-full"):
            for mode in ("poll", "wait"):
                label = f"{name} {mode}"
                rate8 = med(label, 8, "rate")
                median1 = med(label, 1, "median_ms")
                if rate8 is None or median1 is None:  # every measured case has both (c=1 and c=8 each round)
                    continue
                line = f"  {label:18} jobs/s at c=8 over direct {rate8 / direct8:.3f}"
                if litellm8:
                    line += f", over LiteLLM {rate8 / litellm8:.2f} (target >= 1.0)"
                added_ms = median1 - direct1
                line += f"; added latency at c=1 {added_ms:.1f} ms"
                if litellm1:
                    line += f" (LiteLLM adds {litellm1 - direct1:.1f} ms)"
                line += f"; server CPU per job {med(label, 8, 'cpu_ms'):.1f} ms (target <= 13)"
                print(line)
        return 0
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
