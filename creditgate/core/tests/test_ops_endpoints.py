"""/health/, /ready/, /metrics in-process. Under gunicorn, with failing dependencies and several
processes: web/tests/test_production.py."""

from typing import Any

import pytest
from django.test import Client

from creditgate.core import metrics


def test_liveness_touches_no_database():
    # No `db` fixture: a query here would fail the test.
    response = Client().get("/health/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_readiness_lists_each_check(settings):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    response = Client().get("/ready/")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok", "storage": "ok"}}


def test_metrics_are_not_public_without_a_token(settings):
    settings.CREDITGATE_METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_need_the_configured_bearer_token(settings):
    settings.CREDITGATE_METRICS_TOKEN = "s3cret-token"
    for given in (None, "Bearer wrong", "s3cret-token", "Token s3cret-token", "Bearer s3cret-token "):
        extra: dict[str, Any] = {"HTTP_AUTHORIZATION": given} if given is not None else {}
        response = Client().get("/metrics", **extra)
        assert response.status_code == 401, given
        assert response["WWW-Authenticate"].startswith("Bearer")
    metrics.jobs_finished.labels(kind="text", outcome="succeeded").inc()
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'creditgate_jobs_finished_total{kind="text",outcome="succeeded"}' in body
    assert "django_http_requests_total_by_method_total" in body


def test_business_metrics_are_labelled_by_catalog_terms_never_by_user():
    names = set()
    for metric in metrics.ALL:
        assert set(metric._labelnames) <= metrics.ALLOWED_LABELS, metric
        assert metric._name.startswith("creditgate_")
        names.add(metric._name)
    assert len(names) == len(metrics.ALL)


def test_serve_metrics_adds_up_the_processes_of_its_host(tmp_path):
    """The separate bind for a workers-only host: a counter written by one process (a worker)
    is served by the command's own HTTP server."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import requests

    repo = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", ("from creditgate.core import metrics; metrics.provider_calls"
                    ".labels(provider='openai', model='m', kind='image', outcome='timeout').inc(2)")],
                   cwd=repo, env=env, check=True, timeout=60)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "manage.py", "serve_metrics", "--bind", f"127.0.0.1:{port}"],
                              cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert ('creditgate_provider_calls_total{kind="image",model="m",outcome="timeout",provider="openai"} 2.0'
            in body), body[-2000:]
