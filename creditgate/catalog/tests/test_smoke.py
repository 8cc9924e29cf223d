import pytest
from django.conf import settings


@pytest.mark.django_db
def test_var_dir_is_temporary(client):
    assert "creditgate-test-" in str(settings.VAR_DIR)
    assert client.get("/api/v1/system/ai-config/").status_code == 200
