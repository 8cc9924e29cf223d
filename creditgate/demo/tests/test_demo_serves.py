"""`manage.py demo` serves the ASGI app with uvicorn (creditgate/server.py), as production does:
health, static files through WhiteNoise, the login page, the API, and a `Prefer: wait` answered
with the finished job by the in-process runner (issue 24)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import requests

from creditgate.generation.tests.test_crash_points import ROOT
from creditgate.generation.tests.test_faults import free_port


def test_the_demo_serves_the_asgi_app_its_static_files_and_waits(tmp_path):
    port, sandbox_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "CREDITGATE_VAR_DIR": str(tmp_path),
           "CREDITGATE_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}", "DEBUG": "true", "CREDITGATE_SANDBOX": "true",
           "MEDIA_ROOT": str(tmp_path / "media"), "LOG_LEVEL": "WARNING"}
    for name in ("REDIS_URL", "CREDITGATE_JOBS_BACKEND", "CREDITGATE_BREAKER_STORE", "CREDITGATE_PUBLIC_URL"):
        env.pop(name, None)
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "demo.log", "w") as log:
        demo = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(url + "/health/", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert demo.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-3000:]
            time.sleep(0.2)

        css = requests.get(url + "/static/admin/css/base.css", timeout=10)
        assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
        assert requests.get(url + "/accounts/login/", timeout=10).status_code == 200
        assert requests.get(url + "/api/v1/system/ai-config/", timeout=10).status_code == 200

        token = subprocess.run([sys.executable, "manage.py", "drf_create_token", "demo"], cwd=ROOT, env=env,
                               check=True, capture_output=True, text=True).stdout.split()[2]
        done = requests.post(url + "/api/v1/text/generations/", json={"prompt": "Say hello.", "max_tokens": 16},
                             headers={"Authorization": f"Token {token}", "Prefer": "wait=30",
                                      "Idempotency-Key": str(uuid.uuid4())}, timeout=60)
        assert done.status_code == 200, done.text
        assert done.headers["Preference-Applied"] == "wait=30"
        assert done.json()["status"] == "succeeded" and done.json()["credits_charged"] > 0
    finally:
        demo.terminate()
        demo.wait(timeout=30)
