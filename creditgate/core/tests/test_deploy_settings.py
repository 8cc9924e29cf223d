"""Secure deployment by configuration: the README's production `.env` passes `manage.py check
--deploy` with no warning, and each HTTPS setting follows its variable. Each case is a fresh
process, as a deployment reads its environment once at start."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[3]


def readme_production_env(tmp_path: Path) -> dict[str, str]:
    """The variables of the README's `cat > .env <<EOF ... EOF` (Production, step 2), with each
    `$(...)` generated as the README's command would and `$PWD` the given directory."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"^cat > \.env <<EOF\n(.*?)^EOF$", readme, re.DOTALL | re.MULTILINE)
    assert block, "the README's Production section has no `cat > .env <<EOF` block"
    generated = {"SECRET_KEY": secrets.token_hex(32), "CREDITGATE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                 "CREDITGATE_METRICS_TOKEN": secrets.token_hex(24)}
    env = {}
    for line in block.group(1).splitlines():
        name, _, value = line.partition("=")
        if "$(" in value:
            value = generated[name]
        env[name] = value.replace("$PWD", str(tmp_path))
    return env


def run_manage(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    base = {name: value for name, value in os.environ.items()
            if not name.startswith(("CREDITGATE_", "DJANGO_", "SECURE_")) and name not in (
                "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, capture_output=True, text=True, check=False,
                          timeout=120, env={**base, "CREDITGATE_VAR_DIR": str(tmp_path / "var"), **env})


def test_check_deploy_is_clean_with_the_readmes_production_settings(tmp_path):
    env = readme_production_env(tmp_path)
    assert env["DEBUG"] == "false"
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_check_deploy_names_each_insecure_setting_turned_off(tmp_path):
    """The check is not vacuous: the loopback try-out settings are what it warns about."""
    env = {**readme_production_env(tmp_path), "CREDITGATE_SECURE_SSL_REDIRECT": "false",
           "CREDITGATE_SECURE_COOKIES": "false", "CREDITGATE_HSTS_SECONDS": "0"}
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout, warning


SHOW = ("from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD, "
        "s.SECURE_PROXY_SSL_HEADER)")


@pytest.mark.parametrize(("env", "expected"), [
    ({"DEBUG": "true"}, "False False False 0 False False None"),
    ({"DEBUG": "false"}, "True True True 31536000 True False None"),
    ({"DEBUG": "false", "CREDITGATE_SECURE_SSL_REDIRECT": "false", "CREDITGATE_SECURE_COOKIES": "false",
      "CREDITGATE_HSTS_SECONDS": "3600", "CREDITGATE_HSTS_INCLUDE_SUBDOMAINS": "false",
      "CREDITGATE_HSTS_PRELOAD": "true",
      "CREDITGATE_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"},
     "False False False 3600 False True ('HTTP_X_FORWARDED_PROTO', 'https')"),
], ids=["development", "production-defaults", "each-variable"])
def test_https_settings_follow_debug_and_their_variables(tmp_path, env, expected):
    secrets_env = {"SECRET_KEY": secrets.token_hex(32), "CREDITGATE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
                   "ALLOWED_HOSTS": "127.0.0.1"}
    result = run_manage(["shell", "-c", SHOW], {**secrets_env, **env}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


def test_plain_http_is_redirected_except_for_probes_and_the_proxys_https(settings):
    from django.test import Client

    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.CREDITGATE_METRICS_TOKEN = ""
    client = Client()
    response = client.get("/api/v1/credits/balance/")
    assert response.status_code == 301 and response["Location"] == "https://testserver/api/v1/credits/balance/"
    # Forwarded by the TLS proxy: served (here: 401, no credentials), not redirected.
    assert client.get("/api/v1/credits/balance/", HTTP_X_FORWARDED_PROTO="https").status_code == 401
    assert client.get("/health/").status_code == 200  # probes reach the process over plain http
    assert client.get("/metrics").status_code == 404  # not redirected (and not public without a token)


SHOW_SANDBOX = ("from django.conf import settings as s; print(s.CREDITGATE_SANDBOX, s.CREDITGATE_SANDBOX_PAYMENTS, "
                "repr(s.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET))")


def test_with_debug_off_the_sandbox_never_serves_payments_even_when_asked(tmp_path):
    """Issue 22: CREDITGATE_SANDBOX=true with DEBUG=false sandboxes the AI providers only; there
    is no sandbox signing secret to forge a Stripe event with."""
    env = {**readme_production_env(tmp_path), "CREDITGATE_SANDBOX": "true"}
    result = run_manage(["shell", "-c", SHOW_SANDBOX], env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True False ''"
    assert "CREDITGATE_SANDBOX is on with DEBUG off" in result.stderr  # said as the process starts
    assert not (tmp_path / "var" / "sandbox-stripe-webhook.secret").exists()


def test_in_development_each_installation_makes_its_own_secrets(tmp_path):
    """No constant secret: SECRET_KEY and the sandbox's Stripe signing secret are generated per
    installation (its var dir), the same for every process of it, different for another one."""
    show = ("from django.conf import settings as s; "
            "print(s.SECRET_KEY, s.CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET, s.CREDITGATE_SANDBOX_PAYMENTS)")

    def secrets_of(var: Path) -> list[str]:
        result = run_manage(["shell", "-c", show], {"DEBUG": "true", "CREDITGATE_VAR_DIR": str(var)}, tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1].split()

    first = secrets_of(tmp_path / "one")
    assert first == secrets_of(tmp_path / "one")  # another process of the same installation
    other = secrets_of(tmp_path / "two")
    assert first[0] != other[0] and first[1] != other[1]
    assert first[1].startswith("whsec_") and first[1] != "whsec_sandbox" and first[2] == "True"
    assert "dev-only-insecure" not in first[0] and len(first[0]) >= 50
    assert (tmp_path / "one" / "sandbox-stripe-webhook.secret").stat().st_mode & 0o077 == 0
