import re

import pytest
from django.core.management import call_command


def test_openapi_schema_is_valid_and_complete(tmp_path):
    # --fail-on-warn: a view drf-spectacular cannot describe, or two components with one name,
    # would silently leave clients with a wrong schema.
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in ["/api/v1/system/ai-config/", "/api/v1/credits/balance/", "/api/v1/credits/estimate/",
                 "/api/v1/images/generations/", "/api/v1/text/generations/", "/api/v1/articles/generations/",
                 "/api/v1/jobs/{job_id}/"]:
        assert f"{path}:" in schema


@pytest.mark.django_db
def test_docs_page_and_schema_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in docs  # no CDN: the machine may be offline
    # Every script and stylesheet from this server: no absolute URL to another host (a CDN). Not a
    # plain "cdn" substring test: the page carries a random CSRF token that may contain those letters.
    assert re.findall(r'(?:src|href)=["\'](?:https?:)?//', docs) == []


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.django_db
def test_every_list_answers_the_shape_the_schema_declares(client, seeded_catalog):
    """Every GET of a collection (no path parameter), fetched for real: a paginated body has exactly
    the declared page keys with `results` a list, an array body is declared an array."""
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from creditgate.credits import services as credits_services

    spec = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    user = get_user_model().objects.create_user(username="lister", email="lister@example.com")
    credits_services.credits_grant(account=credits_services.account_for_user(user=user), amount=50, reason="test")
    api = APIClient()
    api.force_authenticate(user)

    shapes = {}
    for path, item in spec["paths"].items():
        operation = item.get("get")
        if (operation is None or "{" in path
                or "application/json" not in operation["responses"]["200"].get("content", {})):
            continue
        declared = _resolve(spec, operation["responses"]["200"]["content"]["application/json"]["schema"])
        body = api.get(path).json()
        if declared.get("type") == "array":
            assert isinstance(body, list), path
            shapes[path] = "array"
        elif "results" in declared.get("properties", {}):
            assert set(body) == set(declared["properties"]) == set(declared["required"]), path
            assert isinstance(body["results"], list) and isinstance(body["count"], int), path
            assert {p["name"] for p in operation["parameters"] if p["in"] == "query"} >= {"page"}, path
            shapes[path] = "page"
        else:
            assert isinstance(body, dict) and "results" not in body, path
    assert shapes == {
        "/api/v1/jobs/": "page", "/api/v1/credits/transactions/": "page", "/api/v1/webhooks/deliveries/": "page",
        "/api/v1/credits/packs/": "array", "/api/v1/account/members/": "array", "/api/v1/account/api-keys/": "array",
        "/api/v1/webhooks/endpoints/": "array", "/api/v1/account/invitations/": "array",
    }
    assert api.get("/api/v1/credits/transactions/").json()["count"] == 1  # the grant: a real page, not an empty one


@pytest.mark.django_db
def test_every_operation_declares_its_errors_in_the_error_shape(client):
    spec = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = {code: r for code, r in responses.items() if code >= "400"}
            assert {"405", "500", "503"} <= set(errors), (method, path)
            for code, response in errors.items():
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, \
                    (method, path, code)
            if operation.get("security") and {} not in operation["security"]:
                assert "WWW-Authenticate" in errors["401"]["headers"], (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(errors), (method, path)
            if "{" in path:
                assert "404" in errors, (method, path)
    generation = spec["paths"]["/api/v1/images/generations/"]["post"]["responses"]
    assert generation["429"]["headers"]["Retry-After"]["required"] is True
    assert "Location" in generation["202"]["headers"]


@pytest.mark.django_db
def test_a_bad_page_size_is_refused_not_replaced(client):
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user(username="pager"))
    assert api.get("/api/v1/credits/transactions/?page_size=100").status_code == 200
    for bad in ("0", "101", "-1", "ten", ""):
        response = api.get(f"/api/v1/credits/transactions/?page_size={bad}")
        assert response.status_code == 400, bad
        assert response.json()["error"]["details"] == {"page_size": ["A whole number from 1 to 100 is required."]}
    assert api.get("/api/v1/credits/transactions/?page=2").status_code == 404
