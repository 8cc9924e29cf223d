"""The admin pages of API keys, endpoints and deliveries open, a key can be revoked there, and
neither the key nor its hash is ever shown."""

import pytest
from django.contrib.auth import get_user_model

from creditgate.credits import services


@pytest.mark.django_db
def test_the_admin_shows_keys_endpoints_and_deliveries_and_revokes_keys(client, settings):
    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    admin = get_user_model().objects.create_superuser("root", "r@x.y", "pw")
    member = services.member_for_user(user=admin)
    key, _ = services.api_key_create(actor=admin, member=member, name="k")
    from creditgate.webhooks import services as ws
    ep, _ = ws.endpoint_create(actor=admin, url="http://127.0.0.1:9/x")
    d = ws.test_event_send(actor=admin, endpoint=ep)
    client.force_login(admin)
    for url in ["/admin/credits/apikey/", f"/admin/credits/apikey/{key.pk}/change/", "/admin/webhooks/webhookendpoint/",
                f"/admin/webhooks/webhookendpoint/{ep.pk}/change/", "/admin/webhooks/webhookdelivery/",
                f"/admin/webhooks/webhookdelivery/{d.pk}/change/",
                f"/admin/credits/account/{member.account_id}/change/", "/admin/credits/hold/"]:
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code)
    r = client.post("/admin/credits/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert r.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at
    assert b"hashed" not in client.get(f"/admin/credits/apikey/{key.pk}/change/").content
