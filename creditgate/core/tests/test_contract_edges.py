"""Issue 22, item 7 (CSP aside): the edges of the API contract.

- OPTIONS gives no framework metadata: after the endpoint's own authentication and permissions
  (anonymous where a login is needed: the same 401 as a GET), a bare 200 with `Allow`.
- The schema declares the Idempotency-Key rule and the API key name rule as the server checks them:
  every value the schema's pattern admits is accepted, and what it refuses is refused.
- A page number that is not a whole number from 1 and an empty `?wait=` are 400s.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from creditgate.core.errors import InvalidRequest
from creditgate.credits import services as credits_services
from creditgate.generation import intake
from creditgate.generation.tests.conftest import gen_env, jobs_inprocess  # noqa: F401 - fixtures

OPEN = ["/api/v1/system/ai-config/", "/api/v1/webhooks/stripe/"]
PROTECTED = ["/api/v1/jobs/", "/api/v1/credits/balance/", "/api/v1/images/generations/", "/api/v1/account/api-keys/"]


def _spec(client) -> dict:
    return client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


@pytest.fixture
def user(db):
    user = get_user_model().objects.create_user(username="edges", email="edges@example.com")
    credits_services.credits_grant(account=credits_services.account_for_user(user=user), amount=100, reason="test")
    return user


@pytest.fixture
def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


# --- OPTIONS ----------------------------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize("path", OPEN + PROTECTED)
def test_an_anonymous_options_gives_no_framework_metadata(path):
    response = APIClient().options(path)
    if path in PROTECTED:  # as an anonymous GET or POST there would be
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"
    else:
        assert response.status_code == 200 and response.content == b""
        assert "Allow" in response and "OPTIONS" in response["Allow"]
    for word in (b"renders", b"parses", b"description", b"Api"):
        assert word not in response.content


@pytest.mark.parametrize("path", OPEN + PROTECTED)
def test_an_authenticated_options_is_a_bare_allow_too(api, path):
    response = api.options(path)
    assert response.status_code == 200 and response.content == b""
    assert "OPTIONS" in response["Allow"]


# --- Idempotency-Key ------------------------------------------------------------------------------

def _idempotency_schema(client) -> dict:
    operation = _spec(client)["paths"]["/api/v1/images/generations/"]["post"]
    [header] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    return header["schema"]


@pytest.mark.django_db
def test_the_schema_declares_the_idempotency_key_rule(client):
    schema = _idempotency_schema(client)
    assert schema["minLength"] == 1 and schema["maxLength"] == 255
    pattern = re.compile(schema["pattern"])
    for good in ("k1", "a" * 255, "job 7 retry", "clé-1", "0"):
        assert pattern.search(good), good
    for bad in ("", "auto-1", "a" * 256, "tab\there", " lead", "trail ", "\x7f", "nbsp\xa0x", "soft\xadhyphen"):
        assert not (pattern.search(bad) and len(bad) <= 255), repr(bad)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.from_regex(intake.IDEMPOTENCY_KEY_PATTERN, fullmatch=True).filter(lambda k: len(k) <= 255))
def test_every_key_the_schema_admits_is_accepted(key):
    assert intake._idempotency_key_clean(key) == key


@settings(max_examples=300)
@given(key=st.text(alphabet=st.characters(max_codepoint=0x2FF), max_size=300))
def test_the_server_accepts_exactly_what_the_pattern_admits(key):
    admitted = re.fullmatch(intake.IDEMPOTENCY_KEY_PATTERN, key) is not None and len(key) <= 255
    try:
        intake._idempotency_key_clean(key)
        accepted = True
    except InvalidRequest:
        accepted = False
    assert accepted == admitted


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["auto-123", "x" * 256, "a\x7fb"])
def test_a_key_the_schema_refuses_is_a_400_naming_the_header(api, key):
    response = api.post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic", "count": 1},
                        format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["details"]) == ["Idempotency-Key"]


# --- API key names -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_schema_declares_the_api_key_name_rule(client):
    components = _spec(client)["components"]["schemas"]
    for component in ("ApiKeyCreate", "PatchedApiKeyUpdate"):  # POST's body, PATCH's body
        schema = components[component]["properties"]["name"]
        assert schema["maxLength"] == 100 and schema["pattern"]
        pattern = re.compile(schema["pattern"])
        assert pattern.search("CMS plugin") and pattern.search(" x ")
        for blank in ("   ", "\u200b", "\ufeff\t", "a\x00b"):
            assert not pattern.search(blank), repr(blank)


@pytest.mark.parametrize("name", ["   ", "\u200b\u200b", "\ufeff", " " * 3 + "n" * 100])
def test_a_name_the_schema_refuses_is_a_400_on_create_and_update(api, name):
    created = api.post("/api/v1/account/api-keys/", {"name": name}, format="json")
    assert created.status_code == 400, created.content
    assert list(created.json()["error"]["details"]) == ["name"]
    key = api.post("/api/v1/account/api-keys/", {"name": "Good"}, format="json").json()
    updated = api.patch(f"/api/v1/account/api-keys/{key['id']}/", {"name": name}, format="json")
    assert updated.status_code == 400 and list(updated.json()["error"]["details"]) == ["name"]
    assert api.get(f"/api/v1/account/api-keys/{key['id']}/").json()["name"] == "Good"


@pytest.mark.parametrize("name", [" CMS plugin ", "n" * 100, "\u200bx"])
def test_a_name_the_schema_admits_is_kept_without_its_surrounding_whitespace(api, name):
    created = api.post("/api/v1/account/api-keys/", {"name": name}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == name.strip()


# --- ?page= and ?wait= ---------------------------------------------------------------------------------

@pytest.mark.parametrize("page", ["abc", "0", "-1", "1e9", "", "last", " 1", "\u0661"])
@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/api/v1/credits/transactions/", "/api/v1/webhooks/deliveries/"])
def test_a_page_that_is_not_a_whole_number_from_1_is_a_400(api, path, page):
    response = api.get(path, {"page": page})
    assert response.status_code == 400, (page, response.content)
    assert response.json()["error"]["details"] == {"page": ["A whole number from 1 is required."]}


@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/api/v1/credits/transactions/"])
def test_page_one_and_a_page_past_the_last_answer_as_before(api, path):
    assert api.get(path, {"page": "1"}).status_code == 200
    assert api.get(path, {"page": "1000000000"}).status_code == 404


@pytest.mark.parametrize("wait", ["", " 5", "+5", "5.0", "\u0665"])
def test_a_wait_that_is_not_whole_seconds_is_a_400_even_empty(api, wait):
    response = api.get(f"/api/v1/jobs/{uuid.uuid4()}/", {"wait": wait})
    assert response.status_code == 400, (wait, response.content)
    assert response.json()["error"]["details"] == {"wait": ["A whole number of seconds, 0 or more."]}


@pytest.mark.django_db
def test_every_pattern_in_the_schema_is_a_regex_schema_tools_read(client):
    """jsonschema-rs (ECMAScript regexes, as schemathesis validates a schema) reads every pattern."""
    import jsonschema_rs

    is_regex = jsonschema_rs.validator_for({"type": "string", "format": "regex"}, validate_formats=True)
    patterns: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_spec(client))
    assert len(patterns) > 5
    assert [p for p in patterns if not is_regex.is_valid(p)] == []


@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/api/v1/credits/transactions/", "/api/v1/webhooks/deliveries/"])
def test_a_paginated_list_declares_its_400(client, db, path):
    assert "400" in _spec(client)["paths"][path]["get"]["responses"]


@pytest.mark.parametrize("value", ["", "not-an-id", "{6f1c3a52-9d1e-4d0b-8f5e-5b9a3c0e7a11}",
                                   "6f1c3a529d1e4d0b8f5e5b9a3c0e7a11"])
def test_a_malformed_webhook_endpoint_header_is_a_400_even_on_a_replay(gen_env, value):  # noqa: F811
    """A replay is answered before the request's checks that depend on state (an endpoint removed
    since, the balance), never before its shape: a header the schema refuses is refused."""
    from creditgate.generation.tests.conftest import make_user

    client = APIClient()
    client.force_authenticate(make_user("replayer"))
    body = {"prompt": "a fox", "tier": "basic", "count": 1}
    first = client.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert first.status_code == 202, first.content
    replayed = client.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="same",
                           HTTP_WEBHOOK_ENDPOINT=value)
    assert replayed.status_code == 400, replayed.content
    assert list(replayed.json()["error"]["details"]) == ["Webhook-Endpoint"]
    again = client.post("/api/v1/images/generations/", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]  # the replay itself still works
