"""The schema against the running service: schemathesis over every operation of /api/schema/.

A live server (real HTTP, the test database), a user with credits and a token, providers pointed
at the sandbox (generation POSTs start real jobs that run harmlessly), a fixed seed and a bounded
number of examples, every check schemathesis 4 has: 0 failures. What the schema cannot know (the
state a request meets: a pack that exists, a URL that resolves) is said per operation below, in
the check configuration, never by leaving an operation out.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from schemathesis.config import OutputConfig
from schemathesis.engine import Status, events, from_schema
from schemathesis.engine.statistic import Statistic

from creditgate.billing.models import CreditPack
from creditgate.catalog.models import IntegrationProvider
from creditgate.credits import services as credits_services

SEED = 20240612
MAX_EXAMPLES = 4
ALL_CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
              "response_schema_conformance", "response_headers_conformance", "positive_data_acceptance",
              "negative_data_rejection", "missing_required_header", "unsupported_method",
              "allow_header_conformance", "ignored_auth", "use_after_free", "ensure_resource_availability"]
# schemathesis' default without 5xx (never acceptable here), with 402: the run spends credits and
# may set caps itself (it PATCHes its own member's monthly cap, in every phase including the
# stateful one), so a paid request may meet insufficient_credits or member_cap_exceeded. Only the
# generation POSTs answer 402.
POSITIVE = ["2xx", "3xx", "401", "402", "403", "404", "409", "429"]


def _operations() -> list[dict]:
    """Per-operation check settings, each with the reason the schema alone cannot carry."""
    return [
        # Stripe's webhook: a body is honoured only under a valid Stripe-Signature, an HMAC of the
        # body under the signing secret, which no generated request can carry. Every request is
        # refused (400 invalid_signature, or 503 payments_unavailable when Stripe is not set up):
        # the other checks still run (status codes, content type, the error's shape, headers).
        {"include-path": "/api/v1/webhooks/stripe/",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE, "400"]}}},
        # A pack id is an integer the schema cannot enumerate: a pack that is not for sale is a 400.
        {"include-path": "/api/v1/credits/checkout/", "include-method": "POST",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE, "400"]}}},
        # A webhook URL of the right shape must also resolve to public addresses (webhooks.egress):
        # generated hosts do not resolve here, a 400 naming `url`.
        {"include-path": "/api/v1/webhooks/endpoints/", "include-method": "POST",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE, "400"]}}},
        {"include-path": "/api/v1/webhooks/endpoints/{endpoint_id}/", "include-method": "PATCH",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE, "400"]}}},
        # A rule across two parameters, which OpenAPI cannot state: `from` on or before `to`, and
        # at most 366 days apart (the descriptions say so).
        {"include-path": "/api/v1/credits/usage/",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*POSITIVE, "400"]}}},
    ]


def _config(token: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "deterministic": True},
        "checks": {name: {"enabled": True} for name in ALL_CHECKS}
        | {"positive_data_acceptance": {"enabled": True, "expected-statuses": POSITIVE}},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": True, "max-steps": 4}},
        "auth": {"openapi": {"tokenAuth": {"api_key": f"Token {token}"}}},
        "request-timeout": 20,
        "cache": {"enabled": False},  # every run starts from the seed alone, and writes nothing in the tree
        "operations": _operations(),
    })


@pytest.fixture
def served(transactional_db, seeded_catalog, sandbox, live_server, settings):
    settings.CREDITGATE_JOBS_BACKEND = "inprocess"
    IntegrationProvider.objects.get_or_create(provider_id="stripe")
    CreditPack.objects.create(name="Fuzz pack", credits=300, price_amount=900, currency="usd")
    user = get_user_model().objects.create_user(username="fuzz", email="fuzz@example.com")
    credits_services.credits_grant(account=credits_services.account_for_user(user=user), amount=10**9,
                                   reason="schema fuzzing")
    return live_server, Token.objects.create(user=user).key


def _run(url: str, token: str) -> tuple[Statistic, set[str], int, list[str]]:
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/", config=_config(token))
    statistic = Statistic()
    operations: set[str] = set()
    requests = 0
    errors: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.is_test_scenario:
            statistic.on_scenario_finished(event.recorder)
            requests += len(event.recorder.interactions)
            if event.status != Status.SKIP and event.label:
                operations.add(event.label)
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
    return statistic, operations, requests, errors


def test_schemathesis_finds_nothing_over_every_operation(served, capsys):
    live_server, token = served
    started = time.monotonic()
    statistic, operations, requests, errors = _run(live_server.url, token)
    elapsed = time.monotonic() - started
    declared = {f"{method.upper()} {path}" for path, item in
                schemathesis.openapi.from_url(f"{live_server.url}/api/schema/").raw_schema["paths"].items()
                for method in item if method in ("get", "post", "put", "patch", "delete")}
    failures = [f"{label}\n" + group.format(index=None, curl=group.code_sample, config=OutputConfig())
                for label, grouped in statistic.failures.items() for group in grouped.values()]
    with capsys.disabled():
        print(f"\nschemathesis: {len(operations)} operations, {requests} requests, {statistic.total_cases} cases, "
              f"{statistic.total_failures} failures, {len(errors)} errors, {elapsed:.0f} s")
    assert declared - operations == set(), "operations schemathesis did not test"
    assert errors == []
    assert failures == [], "\n\n".join(failures)
