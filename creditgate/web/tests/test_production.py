"""The service as the README's production recipe runs it: gunicorn (2 workers, DEBUG=false, the
Procfile's config), static files collected and served by WhiteNoise, images in an S3 bucket (moto's
server on loopback), JSON logs, Prometheus in multiprocess mode; on PostgreSQL + Redis also a real
Celery worker. Everything is reached over HTTP from this process, as a browser, a client, a load
balancer and Prometheus would.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection
from rest_framework.authtoken.models import Token

from creditgate.billing.models import CheckoutSession, CreditPack, Payment, StripeEvent
from creditgate.catalog.models import IntegrationProvider
from creditgate.credits import services as credits_services
from creditgate.credits.tests import factories
from creditgate.providers.sandbox.stripe_api import sign

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "pw-production-123"
S3_KEY_ID, S3_SECRET = "moto-key-id", "moto-secret-not-for-logs"
METRICS_TOKEN = "metrics-token-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    return f"sqlite:///{db['NAME']}"


def with_celery() -> bool:
    return connection.vendor == "postgresql" and bool(django_settings.REDIS_URL)


@dataclass
class Server:
    url: str
    env: dict
    process: subprocess.Popen
    log: Path
    extra: list = field(default_factory=list)  # (process, log) of helpers: the Celery worker

    def log_lines(self, *, worker: bool = False) -> list[dict]:
        """The JSON lines this server (or its Celery worker) has written so far."""
        path = self.extra[0][1] if worker else self.log
        return [json.loads(raw) for raw in path.read_text().splitlines() if raw.startswith("{")]

    def stop(self) -> None:
        for proc in [self.process, *(p for p, _ in self.extra)]:
            proc.terminate()
        for proc in [self.process, *(p for p, _ in self.extra)]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_gunicorn(env: dict, log: Path, *, workers: int = 2) -> Server:
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:creditgate.gunicorn_conf", "creditgate.asgi",
             "-w", str(workers), "-b", f"127.0.0.1:{port}", "--timeout", "60"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}", env=env, process=proc, log=log)
    deadline = time.monotonic() + 60  # a loaded 2-core machine boots a worker slowly
    while True:
        try:
            if requests.get(server.url + "/health/", timeout=5).status_code == 200:
                return server
        except requests.RequestException:  # not listening yet, or no worker booted to answer
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise AssertionError("gunicorn did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.2)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on loopback and an empty bucket in it."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_KEY_ID, aws_secret_access_key=S3_SECRET)
    bucket = "creditgate-test-images"
    client.create_bucket(Bucket=bucket)
    yield {"endpoint": endpoint, "client": client, "bucket": bucket}
    server.stop()


@pytest.fixture(scope="module")
def production_env(django_db_setup, django_db_blocker, sandbox_server, s3, tmp_path_factory):
    """The environment of the README's recipe, pointed at this test session's database, Redis,
    provider sandbox and S3; static files collected once."""
    tmp = tmp_path_factory.mktemp("production")
    env = {
        **os.environ,
        "DEBUG": "false",
        # Plain http on loopback, no TLS proxy in front: the README's try-out settings.
        "CREDITGATE_SECURE_SSL_REDIRECT": "false",
        "CREDITGATE_SECURE_COOKIES": "false",
        "SECRET_KEY": "production-test-" + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "CREDITGATE_JOBS_BACKEND": "celery" if with_celery() else "inprocess",
        # The test's var dir: the same file cache (catalog version token) as this process.
        "CREDITGATE_VAR_DIR": str(django_settings.VAR_DIR),
        "STATIC_ROOT": str(tmp / "static"),
        "MEDIA_ROOT": str(tmp / "media"),
        "CREDITGATE_SANDBOX": "true",
        "CREDITGATE_SANDBOX_URL": sandbox_server.url,
        "CREDITGATE_PROVIDER_RETRY_BASE_DELAY": "0.01",
        "CREDITGATE_S3_BUCKET": s3["bucket"],
        "CREDITGATE_S3_ENDPOINT_URL": s3["endpoint"],
        "CREDITGATE_S3_REGION": "us-east-1",
        "CREDITGATE_S3_ACCESS_KEY_ID": S3_KEY_ID,
        "CREDITGATE_S3_SECRET_ACCESS_KEY": S3_SECRET,
        "CREDITGATE_METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        "CREDITGATE_LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "CREDITGATE_INPROCESS_REAP_SECONDS": "0",
    }
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    return env, tmp


@pytest.fixture(scope="module")
def server(production_env):
    env, tmp = production_env
    web = start_gunicorn(env, tmp / "web.log")
    try:  # never leave a server running after the session, whatever fails
        if with_celery():
            log = tmp / "worker.log"
            with open(log, "w") as out:
                worker = subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "creditgate", "worker", "--pool=threads", "--concurrency=2",
                     "--without-heartbeat", "--without-gossip", "--without-mingle"],
                    cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
            web.extra.append((worker, log))
        yield web
    finally:
        web.stop()


@pytest.fixture
def served(server, transactional_db, seeded_catalog):
    """The server, with committed rows it can read (a seeded catalog)."""
    return server


make_user = partial(factories.make_user, password=PASSWORD, reason="production test grant")


def token_for(user) -> dict:
    return {"Authorization": f"Token {Token.objects.create(user=user).key}"}


def wait_ready(server: Server, timeout: float = 30) -> requests.Response:
    """Readiness once it passes (a Celery worker takes a few seconds to answer pings)."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(server.url + "/ready/", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def finished_job(server: Server, headers: dict, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = requests.get(f"{server.url}/api/v1/jobs/{job_id}/", headers=headers, timeout=10).json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


# --- Static files ---------------------------------------------------------------------------------

@pytest.mark.browser
def test_the_page_loads_with_its_assets_under_gunicorn(served, browser):
    user = make_user("pat", credits=30)
    context = browser.new_context()
    context.set_default_timeout(15_000)
    tab = context.new_page()
    assets: dict[str, int] = {}  # static URL -> HTTP status
    tab.on("response", lambda r: assets.__setitem__(r.url, r.status) if "/static/" in r.url else None)
    try:
        tab.goto(served.url + "/")
        tab.get_by_label("Username").fill(user.get_username())
        tab.get_by_label("Password").fill(PASSWORD)
        tab.get_by_role("button", name="Log in").click()
        # app.js ran (it sets data-ready after loading the balance and the tiers through the API)
        tab.wait_for_selector('#app[data-ready="true"]')
        assert tab.locator("#bal-available").inner_text() == "30"
        # app.css applied: the browser's default body margin is 8 px, app.css sets 0
        assert tab.evaluate("() => getComputedStyle(document.body).marginTop") == "0px"
    finally:
        context.close()
    scripts = [url for url in assets if url.endswith(".js")]
    sheets = [url for url in assets if url.endswith(".css")]
    assert scripts and sheets, assets
    assert all(status == 200 for status in assets.values()), assets
    # Cache-busted names (content hash), cached for a year, served compressed.
    assert all(re.search(r"\.[0-9a-f]{12}\.(js|css)$", url) for url in scripts + sheets), assets
    app_js = [url for url in scripts if "/static/web/app." in url]
    assert app_js, scripts
    response = requests.get(app_js[0], headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert "max-age=315360000" in response.headers["Cache-Control"]
    assert response.headers["Content-Encoding"] == "gzip"


# --- Health -----------------------------------------------------------------------------------------

def test_health_and_readiness_answer_json_without_secrets(served):
    health = requests.get(served.url + "/health/", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}

    ready = wait_ready(served)
    assert ready.status_code == 200, ready.text
    expected = {"database", "cache", "storage"} | ({"broker", "workers"} if with_celery() else set())
    # The recipe's CREDITGATE_SANDBOX=true with DEBUG=false: ready, and saying which providers are emulated.
    assert ready.json() == {"status": "ok", "checks": dict.fromkeys(expected, "ok"), "sandboxed": ["openai", "runware"]}
    assert ready.headers["Content-Type"] == "application/json"
    assert "no-cache" in ready.headers["Cache-Control"]


def test_readiness_fails_with_503_when_the_database_or_redis_is_unreachable(production_env, served):
    env, tmp = production_env
    closed = f"127.0.0.1:{free_port()}"
    no_db = start_gunicorn({**env, "DATABASE_URL": f"postgres://postgres:db-password@{closed}/creditgate"},
                           tmp / "no-db.log", workers=1)
    no_redis = start_gunicorn({**env, "REDIS_URL": f"redis://:redis-password@{closed}/0",
                               "CREDITGATE_JOBS_BACKEND": "celery"}, tmp / "no-redis.log", workers=1)
    try:
        for server, failing in ((no_db, {"database"}), (no_redis, {"cache", "broker", "workers"})):
            assert requests.get(server.url + "/health/", timeout=10).status_code == 200  # alive all the same
            started = time.monotonic()
            response = requests.get(server.url + "/ready/", timeout=30)
            assert time.monotonic() - started < 10
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "unavailable"
            assert {name for name, state in body["checks"].items() if state != "ok"} == failing, body
            assert not {"database", "cache", "storage"} - set(body["checks"]), body
            for secret in ("db-password", "redis-password", closed.split(":")[1], S3_SECRET, env["SECRET_KEY"]):
                assert secret not in response.text
    finally:
        no_db.stop()
        no_redis.stop()


# --- No credits minted through the sandbox (issue 22) ---------------------------------------------

def forged_completion(session_id: str, checkout_id: str, secret: str) -> tuple[bytes, str]:
    event = {"id": "evt_forged_" + uuid.uuid4().hex, "object": "event", "type": "checkout.session.completed",
             "created": int(time.time()),
             "data": {"object": {"id": session_id, "object": "checkout.session", "status": "complete",
                                 "payment_status": "paid", "amount_total": 1200, "currency": "usd",
                                 "client_reference_id": checkout_id, "payment_intent": "pi_forged",
                                 "metadata": {"creditgate_checkout": checkout_id}}}}
    payload = json.dumps(event)
    return payload.encode(), sign(payload, secret, int(time.time()))


def test_with_debug_off_the_sandbox_never_sells_credits(served, sandbox_server):
    """DEBUG=false and CREDITGATE_SANDBOX=true (the README's old advice), no Stripe key: no pack, a
    checkout is a 503, and a `checkout.session.completed` signed as the sandbox signs (the old public
    secret, or this installation's development one) grants nothing. The start-up log says loudly
    which providers the sandbox answers for."""
    for provider_id in ("stripe", "resend"):
        IntegrationProvider.objects.get_or_create(provider_id=provider_id)
    pack = CreditPack.objects.create(name="Prod pack", credits=250, price_amount=1200, currency="usd")
    user = make_user("eve", credits=0)
    headers = token_for(user)

    assert requests.get(served.url + "/api/v1/credits/packs/", headers=headers, timeout=10).json() == []
    response = requests.post(served.url + "/api/v1/credits/checkout/", json={"pack": pack.pk}, headers=headers,
                             timeout=30)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "payments_unavailable"
    assert sandbox_server.stripe.sessions == {}

    # A session as one started on the sandbox would have left it (its cs_… id in the checkout's URL).
    account = credits_services.account_for_user(user=user)
    checkout = CheckoutSession.objects.create(account=account, user=user, pack=pack, credits=250, amount=1200,
                                              currency="usd", stripe_session_id="cs_test_forged")
    for secret in ("whsec_sandbox", django_settings.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET,
                   sandbox_server.stripe.webhook_secret):
        body, signature = forged_completion("cs_test_forged", str(checkout.pk), secret)
        response = requests.post(served.url + "/api/v1/webhooks/stripe/", data=body, timeout=30,
                                 headers={"Content-Type": "application/json", "Stripe-Signature": signature})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "payments_unavailable"
    balance = requests.get(served.url + "/api/v1/credits/balance/", headers=headers, timeout=10).json()
    assert balance["available"] == 0
    assert not StripeEvent.objects.exists() and not Payment.objects.exists()

    warnings = [line for line in served.log_lines() if line.get("level") == "warning"
                and "CREDITGATE_SANDBOX is on with DEBUG off" in line.get("event", "")]
    assert warnings, served.log.read_text()[-3000:]


# --- The server's limits (issue 22; uvicorn workers since issue 24) ----------------------------------

def test_the_server_takes_long_lines_and_headers_and_answers_its_own_400_beyond_its_limit(served):
    """creditgate/server.py: request lines and headers as long as gunicorn took (8,190 and 16,384
    bytes), and many headers, reach the API (its JSON answers); a request head beyond
    H11_MAX_HEAD_BYTES is answered by uvicorn itself, a 400 in plain text, as the README says."""
    from creditgate.server import H11_MAX_HEAD_BYTES

    def get(path: str, headers: dict | None = None) -> requests.Response:
        return requests.get(served.url + path, headers=headers, timeout=10)

    base = "/api/v1/jobs/?x="
    line = len("GET  HTTP/1.1") + len(base)
    reached = get(base + "a" * (8190 - line))
    assert reached.status_code == 401 and reached.json()["error"]["code"] == "not_authenticated"
    big_cookie = {"Cookie": "other=" + "c" * (16384 - len("Cookie: other=\r\n"))}
    assert get("/api/v1/credits/balance/", big_cookie).status_code == 401
    assert get("/api/v1/credits/balance/", {f"X-Extra-{n}": "1" for n in range(100)}).status_code == 401

    # Sent in pieces, as a slow client would, so the parser has an incomplete head to bound.
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/credits/balance/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        try:
            for _ in range(2 * H11_MAX_HEAD_BYTES // 4096):
                sock.sendall(b"X-Pad: " + b"p" * 4088 + b"\r\n")
                time.sleep(0.001)
        except OSError:  # refused and closed while we were still sending
            pass
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"application/json" not in answer


# --- Metrics ----------------------------------------------------------------------------------------

def metric_value(text: str, name: str, labels: str) -> float:
    prefix = f"{name}{{{labels}}} "
    values = [float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix)]
    return values[0] if values else 0.0


def test_metrics_need_the_token_and_add_up_every_process(served):
    assert requests.get(served.url + "/metrics", timeout=10).status_code == 401
    wrong = requests.get(served.url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401 and "creditgate" not in wrong.text
    auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}

    def scrape() -> str:
        response = requests.get(served.url + "/metrics", headers=auth, timeout=10)
        assert response.status_code == 200
        return response.text

    # A business counter incremented in another process (as a Celery worker would) is in the total.
    labels = 'outcome="placed"'
    before = metric_value(scrape(), "creditgate_holds_total", labels)
    subprocess.run([sys.executable, "-c", ("from creditgate.core import metrics; "
                    "metrics.holds.labels(outcome='placed').inc(3)")],
                   cwd=REPO, env=served.env,
                   check=True, capture_output=True, timeout=60)
    assert metric_value(scrape(), "creditgate_holds_total", labels) == before + 3

    # Request metrics from both gunicorn workers, added up.
    name, labels = "django_http_responses_total_by_status_view_method_total", 'method="GET",status="200",view="health"'
    before = metric_value(scrape(), name, labels)
    for _ in range(8):
        assert requests.get(served.url + "/health/", timeout=10).status_code == 200
    assert metric_value(scrape(), name, labels) == before + 8


# --- Images in S3, logs -----------------------------------------------------------------------------

def test_images_live_in_s3_and_only_their_owner_gets_them(served, s3):
    owner, other = make_user("owner", credits=50), make_user("other", credits=50)
    headers, other_headers = token_for(owner), token_for(other)
    response = requests.post(served.url + "/api/v1/images/generations/", headers=headers, timeout=30,
                             json={"prompt": "a lighthouse at dusk", "tier": "basic", "count": 2})
    assert response.status_code == 202, response.text
    job = finished_job(served, headers, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert len(job["images"]) == 2

    stored = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix=f"jobs/{job['id']}/")
    objects = {o["Key"]: s3["client"].get_object(Bucket=s3["bucket"], Key=o["Key"])["Body"].read()
               for o in stored.get("Contents", [])}
    assert len(objects) == 2
    assert not (Path(served.env["MEDIA_ROOT"]) / "jobs").exists()  # nothing on this machine's disk

    for image in job["images"]:
        got = requests.get(image["url"], headers=headers, timeout=30)
        assert got.status_code == 200
        assert got.headers["Content-Type"] == "image/png"
        assert got.content.startswith(b"\x89PNG") and got.content in objects.values()
        denied = requests.get(image["url"], headers=other_headers, timeout=30)
        assert denied.status_code == 404
        assert denied.content not in objects.values()


def test_a_request_id_follows_the_job_from_the_web_to_the_worker_and_no_secret_is_logged(served):
    user = make_user("riley", credits=50)
    headers = token_for(user)
    request_id = "support-" + uuid.uuid4().hex
    prompt = "secret-prompt-" + uuid.uuid4().hex
    response = requests.post(served.url + "/api/v1/images/generations/", timeout=30,
                             headers={**headers, "X-Request-ID": request_id},
                             json={"prompt": prompt, "tier": "basic", "count": 1})
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == request_id
    job = finished_job(served, headers, response.json()["id"])
    assert job["status"] == "succeeded", job

    # A made-up id when the caller's is not an id (it would go on every log line).
    bad = requests.get(served.url + "/health/", headers={"X-Request-ID": "x" * 300}, timeout=10)
    assert len(bad.headers["X-Request-ID"]) == 32 and bad.headers["X-Request-ID"] != "x" * 300

    web = [line for line in served.log_lines() if line.get("request_id") == request_id]
    assert {"request_started", "request_finished"} <= {line["event"] for line in web}
    assert all(str(line["user_id"]) == str(user.pk) for line in web if line["event"] == "request_finished")
    everything = served.log.read_text()
    if with_celery():
        worker = [line for line in served.log_lines(worker=True) if line.get("request_id") == request_id]
        assert {"task_started", "task_succeeded"} <= {line["event"] for line in worker}, \
            served.extra[0][1].read_text()[-3000:]
        everything += served.extra[0][1].read_text()
    token = headers["Authorization"].split()[1]
    for secret in (prompt, token, S3_SECRET, METRICS_TOKEN, served.env["SECRET_KEY"]):
        assert secret not in everything
