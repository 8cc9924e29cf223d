"""Settings: the one place that reads the environment (and a `.env` file when present).

Every variable is documented in README.md and `.env.example`.
"""

import ipaddress
import logging
import os
import re
import secrets
import zoneinfo
from pathlib import Path

import csp.constants as csp
import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from creditgate.core import logging as core_logging

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("CREDITGATE_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)


def _installation_secret(name: str, make) -> str:
    """A development secret generated once for this installation and kept in the var dir (0600), so
    every process of the installation (web, worker, `manage.py sandbox`) reads the same one and no
    two installations share it: nothing accepts a secret written in this repository. Written under
    a temporary name and linked into place, so processes starting together agree on the first one."""
    path = VAR_DIR / name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        draft = VAR_DIR / f".{name}.{os.getpid()}"
        draft.write_text(make())
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:  # another process was first: its secret is the one
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _installation_secret(
        "dev-secret-key", lambda: secrets.token_urlsafe(50))
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])

# --- HTTPS ---------------------------------------------------------------------------------
# Production (DEBUG=false) is HTTPS-only by default: plain http is redirected, cookies are sent
# over HTTPS only, and browsers are told (HSTS) to use nothing else for a year. Behind a
# TLS-terminating proxy, name the header it sets (X-Forwarded-Proto) so a request it forwarded
# counts as HTTPS; trust it only when every request comes through that proxy, which must set it.
SECURE_SSL_REDIRECT = env.bool("CREDITGATE_SECURE_SSL_REDIRECT", default=not DEBUG)
# Probes and the scraper reach a process directly, over plain http (paths without the leading "/").
SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^ready/$", r"^metrics$"]
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("CREDITGATE_SECURE_COOKIES", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("CREDITGATE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("CREDITGATE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# Opt-in: asking to be on the browsers' preload list binds the whole domain for a long time.
SECURE_HSTS_PRELOAD = env.bool("CREDITGATE_HSTS_PRELOAD", default=False)
_proxy_ssl_header = env.str("CREDITGATE_SECURE_PROXY_SSL_HEADER", default="").strip()
if _proxy_ssl_header:
    if not re.fullmatch(r"[A-Za-z0-9-]+", _proxy_ssl_header):
        raise ImproperlyConfigured(
            "CREDITGATE_SECURE_PROXY_SSL_HEADER must be a header name such as X-Forwarded-Proto.")
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")

# --- Provider keys at rest -------------------------------------------------------------
# Comma-separated Fernet keys, newest first. The first encrypts; all of them decrypt, so an
# old key stays listed until `manage.py rotate_encryption_keys` has re-encrypted every row.
# Kept apart from SECRET_KEY on purpose: rotating one must not force rotating the other.
CREDITGATE_ENCRYPTION_KEYS = env.list("CREDITGATE_ENCRYPTION_KEYS", default=[])
if not CREDITGATE_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "CREDITGATE_ENCRYPTION_KEYS must be set when DEBUG is off "
            "(generate one with: "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        )
    from cryptography.fernet import Fernet

    CREDITGATE_ENCRYPTION_KEYS = [_installation_secret("dev-encryption.key", lambda: Fernet.generate_key().decode())]
    logging.getLogger("creditgate").warning(
        "CREDITGATE_ENCRYPTION_KEYS is not set: using the development key in %s. "
        "Never run production this way.",
        VAR_DIR / "dev-encryption.key",
    )

# --- Providers ---------------------------------------------------------------------------
# With the sandbox on, every provider that has no real key is served by the local emulator.
CREDITGATE_SANDBOX = env.bool("CREDITGATE_SANDBOX", default=DEBUG)
CREDITGATE_SANDBOX_URL = env.str("CREDITGATE_SANDBOX_URL", default="http://127.0.0.1:8765")
# Stripe and Resend are served by the sandbox in development only: with DEBUG off they are called with
# their real keys or not at all, whatever CREDITGATE_SANDBOX says (a sandboxed Stripe would let anyone
# who reaches the sandbox, or signs as it does, add credits). Fixed by DEBUG as the process starts,
# never read from the environment; a setting of its own because pytest-django turns settings.DEBUG
# off in every test (tests switch this one off to act as production).
CREDITGATE_SANDBOX_PAYMENTS = DEBUG
# What the sandbox signs its Stripe events with, and so the only secret the webhook accepts from it:
# generated for this installation (var/sandbox-stripe-webhook.secret, read by the web processes and
# by `manage.py sandbox` alike). Empty with DEBUG off: no sandboxed Stripe event is ever accepted.
CREDITGATE_SANDBOX_STRIPE_WEBHOOK_SECRET = _installation_secret(
    "sandbox-stripe-webhook.secret", lambda: "whsec_" + secrets.token_hex(24)) if DEBUG else ""
# Provider calls: explicit timeouts (seconds) and bounded retries (providers.base.CallPolicy).
CREDITGATE_PROVIDER_CONNECT_TIMEOUT = env.float("CREDITGATE_PROVIDER_CONNECT_TIMEOUT", default=5.0)
CREDITGATE_PROVIDER_TEXT_TIMEOUT = env.float("CREDITGATE_PROVIDER_TEXT_TIMEOUT", default=120.0)
CREDITGATE_PROVIDER_IMAGE_TIMEOUT = env.float("CREDITGATE_PROVIDER_IMAGE_TIMEOUT", default=120.0)
CREDITGATE_PROVIDER_DOWNLOAD_TIMEOUT = env.float("CREDITGATE_PROVIDER_DOWNLOAD_TIMEOUT", default=60.0)
CREDITGATE_PROVIDER_MAX_RETRIES = env.int("CREDITGATE_PROVIDER_MAX_RETRIES", default=2)
CREDITGATE_PROVIDER_RETRY_BASE_DELAY = env.float("CREDITGATE_PROVIDER_RETRY_BASE_DELAY", default=0.5)
CREDITGATE_PROVIDER_RETRY_MAX_DELAY = env.float("CREDITGATE_PROVIDER_RETRY_MAX_DELAY", default=30.0)
CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS = env.int("CREDITGATE_PROVIDER_MAX_PARALLEL_CALLS", default=8)
# The admin and the model lifecycle check warn this many days before a model or a tier's last
# model retires.
CREDITGATE_RETIREMENT_WARNING_DAYS = env.int("CREDITGATE_RETIREMENT_WARNING_DAYS", default=30)
# Circuit breakers (creditgate.providers.breaker): after _FAILURES failures in a row within
# _WINDOW_SECONDS, calls to a provider (or a model) are skipped for _COOLDOWN_SECONDS, then one
# trial call decides. Shared through Redis when REDIS_URL is set, else through the database.
CREDITGATE_BREAKER_FAILURES = env.int("CREDITGATE_BREAKER_FAILURES", default=5)
CREDITGATE_BREAKER_WINDOW_SECONDS = env.float("CREDITGATE_BREAKER_WINDOW_SECONDS", default=60.0)
CREDITGATE_BREAKER_COOLDOWN_SECONDS = env.float("CREDITGATE_BREAKER_COOLDOWN_SECONDS", default=30.0)

# --- Apps ----------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served by us: /api/docs/ works with no internet
    "simple_history",
    "anymail",
    "django_structlog",
    "creditgate.core",
    "creditgate.catalog",
    "creditgate.credits",
    "creditgate.providers",
    "creditgate.generation",
    "creditgate.web",
    "creditgate.demo",
    "creditgate.legacy",
    "creditgate.audit",
    "creditgate.billing",
    "creditgate.webhooks",
    "creditgate.reports",
    "creditgate.openai_compat",
    # After our apps: their templates (creditgate/credits/templates/account/, allauth/) come first.
    "allauth",
    "allauth.account",
]

# Under ASGI (the web server) the MiddlewareMixin middleware below are loaded as core.middleware's
# subclasses of them, whose hooks run on the event loop instead of a thread hop each (it says
# why); this list keeps Django's names, which its checks (check --deploy) look for.
MIDDLEWARE = [
    # First and last: request counts and latencies by view, method and status (/metrics).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ from STATIC_ROOT (collectstatic), before anything that touches the database.
    "creditgate.core.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "creditgate.core.middleware.RequestIdMiddleware",
    # Under /api/, an error page that is not JSON (Django's debug pages) becomes the API's error shape.
    "creditgate.core.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Tells the configuration history who made a change (creditgate.audit).
    "simple_history.middleware.HistoryRequestMiddleware",
    # Binds the request id (and the user id) into the log context; logs each request once.
    "django_structlog.middlewares.RequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # django-allauth: its login, sign-up, email verification and password reset flows (/accounts/).
    "allauth.account.middleware.AccountMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Content-Security-Policy (django-csp) on every answer: the page, the admin, /api/docs/. Scripts,
# styles, images, fonts and fetches only from this origin, no inline script or style anywhere (the
# templates load files; Swagger UI's start script is its own URL), nothing may frame the pages.
# `data:` images: the admin's and Swagger UI's icons. Set after the list above is written, so
# the list stays one to read.
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "csp.middleware.CSPMiddleware")
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "script-src": [csp.SELF],
        "style-src": [csp.SELF],
        "img-src": [csp.SELF, "data:"],
        "font-src": [csp.SELF],
        "connect-src": [csp.SELF],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    },
}

ROOT_URLCONF = "creditgate.urls"
WSGI_APPLICATION = "creditgate.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "creditgate.credits.context_processors.accounts",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE: a write transaction takes SQLite's write lock at BEGIN, so two writers queue
    # instead of failing halfway with "database is locked"; WAL lets readers go on meanwhile.
    # Tests on a file, not SQLite's in-memory shared cache: that one answers "table is locked" at
    # once to concurrent writers instead of waiting, so job threads would not behave as in production.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
# Connections: under ASGI (creditgate/asgi.py) Django runs each request's sync code in a thread of
# the request's own, so a connection kept by a thread (CONN_MAX_AGE > 0) would outlive it and pile
# up: Django's documentation says to disable persistent connections under ASGI and use the
# backend's pool. On PostgreSQL, psycopg's pool (Django's OPTIONS["pool"]): each process opens at
# most CREDITGATE_DB_POOL_SIZE connections, whatever the requests and waits in flight (a request
# takes one for its sync work and gives it back when it ends, and before a wait; a request past the
# size waits up to CREDITGATE_DB_POOL_TIMEOUT seconds for one, then fails as a database error, 503).
# The timeout is short: a connection is held for milliseconds, and while PostgreSQL is unreachable
# every request (and /ready/) waits this long for the pool before it answers.
# Connections to PostgreSQL per host = its processes (web workers, Celery processes) x the size.
# Celery's prefork children open their pool after the fork (Celery closes the inherited one), and
# use one connection each. CREDITGATE_DB_POOL_SIZE=0: no pool (CONN_MAX_AGE then applies, for
# WSGI-only or pgbouncer setups). SQLite: connections are files, opened per request (~0.1 ms).
CREDITGATE_DB_POOL_SIZE = env.int("CREDITGATE_DB_POOL_SIZE", default=10)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters bound by PostgreSQL (psycopg's server-side binding; Django's default binds them into
    # the text on the client), so a statement a connection has run 5 times is prepared: parsed
    # once, not at every run. A job is the same ~20 statements every time; in bench_inflight the
    # database's CPU an op fell from 8-9 ms to 5.5-6.5 ms (parsing and planning). Behind a pooler in
    # transaction mode this needs PgBouncer 1.21 or newer with `max_prepared_statements` set.
    # Each run is still planned for its values (plan_cache_mode=force_custom_plan): a generic plan,
    # which PostgreSQL otherwise picks after 5 runs, cannot use a partial index whose condition a
    # parameter decides, and the count of an account's jobs in flight under its row's lock then
    # read every job the account ever had instead of the unfinished ones. Behind PgBouncer, which
    # does not pass this startup option on, set it on the database (README, Production).
    options = DATABASES["default"].setdefault("OPTIONS", {})
    options.update(server_side_binding=True, prepare_threshold=5)
    options["options"] = " ".join(filter(None, [options.get("options", ""), "-c plan_cache_mode=force_custom_plan"]))
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and CREDITGATE_DB_POOL_SIZE > 0:
    if env.int("CONN_MAX_AGE", default=0):
        raise ImproperlyConfigured("CONN_MAX_AGE must be 0 with the database pool (CREDITGATE_DB_POOL_SIZE > 0).")
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,  # a Celery prefork child, or an idle web process, keeps one
        "max_size": CREDITGATE_DB_POOL_SIZE,
        "timeout": env.float("CREDITGATE_DB_POOL_TIMEOUT", default=2.0),
    }
    # Django's backend, but the pool pings a connection before it hands it out only when it was last
    # handed out a second or more before (creditgate/core/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "creditgate.core.postgresql"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and jobs ----------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Where circuit breakers keep their state: "redis" (needs REDIS_URL) or "database".
CREDITGATE_BREAKER_STORE = env.str("CREDITGATE_BREAKER_STORE", default="redis" if REDIS_URL else "database")
if CREDITGATE_BREAKER_STORE not in ("redis", "database") or (CREDITGATE_BREAKER_STORE == "redis" and not REDIS_URL):
    raise ImproperlyConfigured('CREDITGATE_BREAKER_STORE must be "database", or "redis" with REDIS_URL set.')
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # A file cache is shared by every process on this machine (several web workers, a shell,
    # a management command), so an invalidation made by one is seen by all.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
# A job's task is acknowledged only after it ran, and given back if its worker process dies, so a
# lost task is delivered again. That is a second line: the job's lease and the sweep are what
# guarantee a job is finished whatever happened to its message (generation.services).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A POST must not hang on an unreachable broker: the job is durable, the sweep hands it over later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 3}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Keep database connections across tasks (creditgate.celery closes only broken or old ones, as
# Django does per request); Celery's fix-up would otherwise reconnect for every job.
CELERY_DB_REUSE_MAX = 1_000_000
# Two queues, each with its own worker line in the Procfile, so that recovery never waits behind
# work: `jobs` holds the paid generations; `housekeeping` everything else (the sweep that recovers
# lost jobs and runs the outbox, the audit, webhook deliveries, emails, rollups, the model check).
# A backlog of jobs then delays no sweep. A worker started without -Q consumes both (the demo, tests).
CELERY_TASK_QUEUES = (Queue("jobs"), Queue("housekeeping"))
CELERY_TASK_DEFAULT_QUEUE = "housekeeping"
CELERY_TASK_ROUTES = {"creditgate.generation.tasks.run_job": {"queue": "jobs"}}

# --- Durable jobs ------------------------------------------------------------------------
# Jobs go to Celery only when a broker is configured; otherwise they run in this process.
CREDITGATE_JOBS_BACKEND = env.str("CREDITGATE_JOBS_BACKEND", default="celery" if REDIS_URL else "inprocess")
# A running job's lease: its worker renews it every quarter of this while it waits on providers;
# once it lapses, the sweep takes the job over.
CREDITGATE_JOB_LEASE_SECONDS = env.float("CREDITGATE_JOB_LEASE_SECONDS", default=60)
# A streamed run (/v1 with stream) writes the tokens it counted so far at most this often (and
# at its first token): what the sweep charges if its process dies mid-stream (generation.streams).
CREDITGATE_STREAM_CHECKPOINT_SECONDS = env.float("CREDITGATE_STREAM_CHECKPOINT_SECONDS", default=2)
# How often the sweep runs (Celery beat; in-process mode: a thread, 0 switches it off).
CREDITGATE_JOB_SWEEP_SECONDS = env.float("CREDITGATE_JOB_SWEEP_SECONDS", default=15)
# Runs a job may start before it is settled with what it delivered, and the base of the backoff
# between them (doubling).
CREDITGATE_JOB_MAX_ATTEMPTS = env.int("CREDITGATE_JOB_MAX_ATTEMPTS", default=3)
CREDITGATE_JOB_RETRY_DELAY_SECONDS = env.float("CREDITGATE_JOB_RETRY_DELAY_SECONDS", default=5)
# A queued job that no worker started within this is settled (failed, its credits returned).
CREDITGATE_JOB_QUEUE_TIMEOUT_SECONDS = env.int("CREDITGATE_JOB_QUEUE_TIMEOUT_SECONDS", default=3600)
# A queued job handed to the broker this long ago and still not started is handed over again
# (Redis may have lost the message); a duplicate is harmless, only one run can claim a job.
CREDITGATE_JOB_REDISPATCH_SECONDS = env.int("CREDITGATE_JOB_REDISPATCH_SECONDS", default=300)
# The in-process runner (CREDITGATE_JOBS_BACKEND=inprocess): jobs it runs at once on its event loop,
# jobs it accepts beyond those to wait for a slot (past both, a job stays in the database's
# outbox for the sweep), and the threads its jobs' database steps run on (at most that many
# database connections for them, whatever the number of jobs in flight).
CREDITGATE_INPROCESS_JOBS_IN_FLIGHT = env.int("CREDITGATE_INPROCESS_JOBS_IN_FLIGHT", default=500)
CREDITGATE_INPROCESS_JOBS_QUEUED = env.int("CREDITGATE_INPROCESS_JOBS_QUEUED", default=1000)
CREDITGATE_INPROCESS_SYNC_THREADS = env.int("CREDITGATE_INPROCESS_SYNC_THREADS", default=8)
# Holds that no job owns (none of the service's own) expire after this; a job's hold never does.
CREDITGATE_HOLD_TTL_SECONDS = env.int("CREDITGATE_HOLD_TTL_SECONDS", default=15 * 60)
# Members' monthly caps count calendar months in this time zone (an IANA name).
CREDITGATE_SPENDING_TIME_ZONE = env.str("CREDITGATE_SPENDING_TIME_ZONE", default="UTC")
try:
    zoneinfo.ZoneInfo(CREDITGATE_SPENDING_TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(
        f"CREDITGATE_SPENDING_TIME_ZONE: unknown time zone {CREDITGATE_SPENDING_TIME_ZONE!r}.") from None

# How often the usage report's closed days are rolled up (at most 31 days a run): by Celery beat, or
# by the in-process sweeper's thread without a broker.
CREDITGATE_USAGE_ROLLUP_SECONDS = env.float("CREDITGATE_USAGE_ROLLUP_SECONDS", default=3600)

CELERY_BEAT_SCHEDULE = {
    # Recovery of lapsed leases, the outbox, queue timeouts (generation.services.jobs_sweep).
    "sweep-jobs": {"task": "creditgate.generation.tasks.sweep_jobs",
                   "schedule": float(CREDITGATE_JOB_SWEEP_SECONDS or 15)},
    # The full reconciliation audit (manage.py check_ledger), hourly; its findings are logged.
    "audit-ledger": {"task": "creditgate.generation.tasks.audit_ledger", "schedule": 3600.0},
    # Asks the providers which catalog models they still offer (manage.py check_model_lifecycle).
    "check-model-lifecycle": {"task": "creditgate.providers.tasks.check_model_lifecycle", "schedule": 24 * 3600.0},
    # Webhook deliveries that are due and were not handed over (webhooks.services.deliveries_sweep).
    "sweep-webhooks": {"task": "creditgate.webhooks.tasks.sweep_deliveries",
                       "schedule": float(CREDITGATE_JOB_SWEEP_SECONDS or 15)},
    # The usage report's rollups of closed days (manage.py roll_up_usage).
    "roll-up-usage": {"task": "creditgate.reports.tasks.roll_up_usage",
                      "schedule": float(CREDITGATE_USAGE_ROLLUP_SECONDS or 3600)},
}

# --- Buying credits (creditgate.billing) ---------------------------------------------------
# Stripe's and Resend's keys live in IntegrationProvider rows `stripe` and `resend` (the admin's
# Providers page), like the AI providers' keys; without a key, the sandbox serves them while
# CREDITGATE_SANDBOX is on. These settings are the rest.
# Where the service is reached from outside: the links in emails (a checkout's return address is
# taken from the request that started it).
CREDITGATE_PUBLIC_URL = env.str("CREDITGATE_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
# The sender of the service's emails (low-balance alerts); with Resend, an address of a verified domain.
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="creditgate <alerts@creditgate.example>")
# A low-balance email Resend did not take (after its task's own retries) is tried again this often
# (Celery beat, or the in-process sweeper), until it has been tried this many times in all.
CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS = env.float("CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS", default=600)
CREDITGATE_LOW_BALANCE_EMAIL_MAX_ATTEMPTS = env.int("CREDITGATE_LOW_BALANCE_EMAIL_MAX_ATTEMPTS", default=20)
CELERY_BEAT_SCHEDULE["retry-low-balance-emails"] = {
    "task": "creditgate.billing.tasks.retry_low_balance_emails",
    "schedule": float(CREDITGATE_LOW_BALANCE_EMAIL_RETRY_SECONDS or 600)}
# Webhooks (creditgate.webhooks): per-attempt timeout, retry backoff (doubling from the base up to
# the max) for a bounded period after the event, the networks that may receive them although not
# public (CIDRs; empty: public addresses only). Image URLs in payloads are made absolute with
# CREDITGATE_PUBLIC_URL (above).
CREDITGATE_WEBHOOK_TIMEOUT_SECONDS = env.float("CREDITGATE_WEBHOOK_TIMEOUT_SECONDS", default=10)
CREDITGATE_WEBHOOK_RETRY_BASE_SECONDS = env.float("CREDITGATE_WEBHOOK_RETRY_BASE_SECONDS", default=10)
CREDITGATE_WEBHOOK_RETRY_MAX_SECONDS = env.float("CREDITGATE_WEBHOOK_RETRY_MAX_SECONDS", default=3600)
CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS = env.int("CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS", default=3 * 24 * 3600)
CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = env.list("CREDITGATE_WEBHOOK_ALLOWED_NETWORKS", default=[])
try:
    [ipaddress.ip_network(n, strict=False) for n in CREDITGATE_WEBHOOK_ALLOWED_NETWORKS]
except ValueError as exc:
    raise ImproperlyConfigured(f"CREDITGATE_WEBHOOK_ALLOWED_NETWORKS: {exc}") from None

# --- Auth, API ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
# Accounts through django-allauth: sign-up with a verified email, log in with the username or the
# email, log out, password reset, all at /accounts/ (templates in creditgate/credits/templates/account/).
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend",
                           "allauth.account.auth_backends.AuthenticationBackend"]
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_REDIRECT_URL = LOGOUT_REDIRECT_URL
ACCOUNT_EMAIL_SUBJECT_PREFIX = "creditgate: "
ACCOUNT_ADAPTER = "creditgate.credits.accounts.AccountAdapter"
# Invite-only installations: false closes /accounts/signup/ (invited people still join: an owner
# invites an existing user, or the operator makes the user in the admin).
CREDITGATE_SIGNUP_OPEN = env.bool("CREDITGATE_SIGNUP_OPEN", default=True)
# How long an invitation's link works.
CREDITGATE_INVITATION_DAYS = env.float("CREDITGATE_INVITATION_DAYS", default=7)
# Django's email API (allauth's emails, invitations) goes through Resend like the low-balance
# emails: the key from the admin's Providers page, or the sandbox (creditgate.providers.mail).
EMAIL_BACKEND = "creditgate.providers.mail.ResendEmailBackend"


def _rate(value: str) -> tuple[int, int] | None:
    """'120/min' -> (120, 60): at most that many, per that many seconds (s, min, hour, day);
    'off' -> None: no such limit."""
    if value.strip().lower() == "off":
        return None
    count, _, period = value.partition("/")
    seconds = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
               "d": 86400, "day": 86400}.get(period.strip().lower())
    if not count.strip().isdigit() or int(count) < 1 or seconds is None:
        raise ImproperlyConfigured(f"A rate must look like 120/min (or be off), not {value!r}.")
    return int(count), seconds


# Generation jobs an account may start per period; over it the API answers 429. `off`: no such limit
# (the check reads up to that many of the account's jobs under its row's lock: keep it near real need).
CREDITGATE_GENERATION_RATE = _rate(env.str("CREDITGATE_GENERATION_RATE", default="120/min"))
# Fair shares: jobs in flight (queued or running) an account, and each API key, may have at once;
# past either the API answers 429 too_many_jobs_in_flight. 0: no such limit.
CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT = env.int("CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT", default=100)
CREDITGATE_API_KEY_JOBS_IN_FLIGHT = env.int("CREDITGATE_API_KEY_JOBS_IN_FLIGHT", default=50)
if CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT < 0 or CREDITGATE_API_KEY_JOBS_IN_FLIGHT < 0:
    raise ImproperlyConfigured("CREDITGATE_ACCOUNT_JOBS_IN_FLIGHT and CREDITGATE_API_KEY_JOBS_IN_FLIGHT must be "
                               "0 (no limit) or more.")
# Concurrent waits (`Prefer: wait`, `?wait=N`) an account, and an API key, may hold in one web process
# (generation/waiting.py): past it `?wait` answers 429 too_many_waits and `Prefer: wait` is ignored.
# A wait costs ~70 KB and no thread (README, Production), so the bound is about fair shares of a
# process's CREDITGATE_WEB_LIMIT_CONCURRENCY (1000), not memory: one account may take a fifth of
# them, one of its keys half of that, and several callers still find room.
CREDITGATE_ACCOUNT_WAITS = env.int("CREDITGATE_ACCOUNT_WAITS", default=200)
CREDITGATE_API_KEY_WAITS = env.int("CREDITGATE_API_KEY_WAITS", default=100)
if CREDITGATE_ACCOUNT_WAITS < 0 or CREDITGATE_API_KEY_WAITS < 0:
    raise ImproperlyConfigured("CREDITGATE_ACCOUNT_WAITS and CREDITGATE_API_KEY_WAITS must be 0 or more.")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Header-based ones first: an anonymous API call then answers 401 with WWW-Authenticate
        # (the first class's), not 403. Members' API keys, then the legacy per-user DRF tokens.
        "creditgate.credits.authentication.ApiKeyAuthentication",
        "creditgate.credits.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with a bound on nesting: a deep body is a 400, not a RecursionError.
    "DEFAULT_PARSER_CLASSES": ["creditgate.core.parsers.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "creditgate.core.exception_handler.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "creditgate.core.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "creditgate.core.pagination.PageNumberPagination",
    # OPTIONS: a bare 200 with Allow, never the framework's description of the view (core/metadata.py).
    "DEFAULT_METADATA_CLASS": "creditgate.core.metadata.NoMetadata",
    "PAGE_SIZE": 20,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "creditgate API",
    "DESCRIPTION": "Sell AI generation for credits.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # The docs' groups, in this order (core.schema.AutoSchema puts each operation in its app's).
    "TAGS": [
        {"name": "Generation", "description": "Images, text and articles, each a job charged in credits: the "
                                              "estimate, the generation requests, the jobs and their images."},
        {"name": "Credits", "description": "The account's balance, its ledger, and what was spent per day and tier."},
        {"name": "Buying credits", "description": "Credit packs, Stripe Checkout and Stripe's webhook, the "
                                                  "low-balance email, and what a refund left owed."},
        {"name": "Catalog", "description": "What can be generated now and at what price (no login needed)."},
        {"name": "Team", "description": "The account's members, their monthly caps, and API keys."},
        {"name": "Webhooks", "description": "Endpoints that receive a signed event when a job is final, and the "
                                            "deliveries."},
    ],
    "ENUM_NAME_OVERRIDES": {
        "LedgerEntryKindEnum": "creditgate.credits.models.EntryKind",
        "EstimateKindEnum": [("image", "image"), ("text", "text")],
        "UsageGroupEnum": [("day", "day"), ("tier", "tier")],
        "CheckoutStatusEnum": "creditgate.billing.models.CheckoutStatus",
        "WebhookOutcomeEnum": "creditgate.billing.models.EventOutcome",
        "WebhookDeliveryStatusEnum": "creditgate.webhooks.models.DeliveryStatus",
        "WebhookEventTypeEnum": "creditgate.webhooks.models.EventType",
        "MemberRoleEnum": "creditgate.credits.models.MemberRole",
    },
}

# The configuration's history is read, never rewritten: no "revert" button on a past version.
SIMPLE_HISTORY_REVERT_DISABLED = True

# --- Static and media --------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
if DEBUG:  # WhiteNoise serves the apps' own files then, and warns when STATIC_ROOT is missing
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Images go through Django's storage API: local disk (MEDIA_ROOT) by default, an S3-compatible
# bucket when CREDITGATE_S3_BUCKET is set, so every web process and worker, on any host, reads
# and writes the same files. Credentials: the CREDITGATE_S3_* pair, else boto3's own chain
# (AWS_* variables, an instance role). Objects stay private: the API streams them to their owner.
CREDITGATE_S3_BUCKET = env.str("CREDITGATE_S3_BUCKET", default="")
if CREDITGATE_S3_BUCKET:
    _media_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": CREDITGATE_S3_BUCKET,
            "endpoint_url": env.str("CREDITGATE_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("CREDITGATE_S3_REGION", default="") or None,
            "access_key": env.str("CREDITGATE_S3_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("CREDITGATE_S3_SECRET_ACCESS_KEY", default="") or None,
            "location": env.str("CREDITGATE_S3_PREFIX", default=""),
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    _media_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _media_storage,
    # Production: compressed copies and content-hashed names (cached forever by browsers), built by
    # `manage.py collectstatic` and served by WhiteNoise. Development reads the apps' files as they are.
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logs and metrics ----------------------------------------------------------------------
# One JSON object per line in production, readable lines in development (core.logging).
CREDITGATE_LOG_FORMAT = env.str("CREDITGATE_LOG_FORMAT", default="console" if DEBUG else "json")
LOGGING = core_logging.logging_config(fmt=CREDITGATE_LOG_FORMAT,
                                      level=core_logging.level_name(env.str("LOG_LEVEL", default="INFO")))
core_logging.structlog_configure()
DJANGO_STRUCTLOG_TRUST_UPSTREAM_REQUEST_ID = True  # checked and returned by core.middleware.RequestIdMiddleware
DJANGO_STRUCTLOG_CELERY_ENABLED = True  # a task's log lines carry the request id of the request that queued it

# /metrics answers only with `Authorization: Bearer <this>`; unset, it is a 404.
CREDITGATE_METRICS_TOKEN = env.str("CREDITGATE_METRICS_TOKEN", default="")
# prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself (README, "Production"); it must exist.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# --- Reports -------------------------------------------------------------------------------
# The usage and margin report flags a model whose provider-reported cost per image differs from
# the catalog's price by more than this percentage, once at least _MIN_UNITS images are behind it.
CREDITGATE_COST_DRIFT_PERCENT = env.float("CREDITGATE_COST_DRIFT_PERCENT", default=20.0)
CREDITGATE_COST_DRIFT_MIN_UNITS = env.int("CREDITGATE_COST_DRIFT_MIN_UNITS", default=10)
