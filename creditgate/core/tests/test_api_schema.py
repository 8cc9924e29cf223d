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
    assert "cdn" not in docs.lower()
