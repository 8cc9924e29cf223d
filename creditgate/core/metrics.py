"""The business metrics, all defined here; `/metrics` exposes them with the request metrics.

Each one is updated on the code path that changes what it counts (the ledger's, the job's, the
provider call's), so the figures cannot drift from the tables. Its docstring says where.

Labels are only `tier`, `model`, `provider`, `kind` and `outcome`, each with a small fixed set of
values (a user, an account or a job id would make one time series per customer). `tier` is the
image tier, "none" where a charge has no images; `kind` is the job kind: image, text, article.

Several processes (gunicorn's workers, Celery's) each count their own share: with
`PROMETHEUS_MULTIPROC_DIR` set (README, "Production") prometheus_client writes every process's
values to files in that directory and `/metrics` adds them up.
"""

from prometheus_client import Counter, Histogram

# The values each label takes. Outcomes of a provider call: ok, or why it failed.
KINDS = ("image", "text", "article")
HOLD_OUTCOMES = ("placed", "refused", "captured", "released", "expired")
PROVIDER_CALL_OUTCOMES = ("ok", "refused", "rate_limited", "timeout", "server_error", "bad_key", "quota", "error")
JOB_OUTCOMES = ("succeeded", "partial", "failed")
NO_TIER = "none"

holds = Counter(
    "creditgate_holds", "Credit holds by what happened to them.", ["outcome"],
)
"""Once per event in credits.services, after its transaction commits: `placed` in hold_place when
the hold is written, `refused` there when the balance (or a shortfall) refuses it (the 402),
`captured`/`released`/`expired` in hold_settle (captured when any amount is captured). The ledger
knows no job kinds, so neither does this counter."""

credits_charged = Counter(
    "creditgate_credits_charged", "Credits captured from accounts.", ["kind", "tier"],
)
"""By the captured amount, where a job's settlement captures its hold (generation.charging
Settlement.settle_hold), after that transaction commits, with the job's kind and image tier
(NO_TIER for a text job)."""

provider_calls = Counter(
    "creditgate_provider_calls", "Provider calls (each attempt, retries included).",
    ["provider", "model", "kind", "outcome"],
)
"""Once per provider call record (ProviderCall) written by generation.services, after that
transaction commits, with outcome one of PROVIDER_CALL_OUTCOMES (`provider_call_outcome`)."""

provider_call_seconds = Histogram(
    "creditgate_provider_call_seconds", "Latency of one provider call attempt.",
    ["provider", "model", "kind"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
"""Observed beside `provider_calls`, with the attempt's duration in seconds."""

job_queue_wait_seconds = Histogram(
    "creditgate_job_queue_wait_seconds", "Time from a job's acceptance (202) to a worker starting it.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
"""Observed once per job in generation.services.job_run when a worker first starts it: now - created_at."""

jobs_finished = Counter(
    "creditgate_jobs_finished", "Jobs that reached a final status.", ["kind", "outcome"],
)
"""Once per job where its status becomes final (generation.services: job_run's settlement or
jobs_sweep), with outcome that status: succeeded, partial or failed."""

_OUTCOME_OF_ERROR = {"content_refused": "refused", "provider_rate_limited": "rate_limited",
                     "provider_timeout": "timeout", "provider_unavailable": "server_error",
                     "provider_auth_failed": "bad_key", "provider_not_configured": "bad_key",
                     "provider_quota_exhausted": "quota"}


def provider_call_outcome(status: str, error_code: str) -> str:
    """A provider call's outcome label: ok when it answered with images or text, else why not."""
    if status in ("succeeded", "partial"):
        return "ok"
    return _OUTCOME_OF_ERROR.get(error_code, "error")


ALL = (holds, credits_charged, provider_calls, provider_call_seconds, job_queue_wait_seconds, jobs_finished)
ALLOWED_LABELS = frozenset({"tier", "model", "provider", "kind", "outcome"})
