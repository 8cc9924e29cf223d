"""Billing in the admin: packs (validated by their constraints, with their history), Stripe's
signing secret (write-only, never in the history), and the read-only pages an operator checks
after a purchase, a refund and a report."""

from __future__ import annotations

import logging

import pytest
from django.apps import apps

from creditgate.audit.models import ConfigChange
from creditgate.audit.tests.admin_forms import submit_change_form
from creditgate.billing.models import CreditPack, LowBalanceEmail
from creditgate.catalog import services as catalog_services
from creditgate.catalog.models import IntegrationProvider
from creditgate.credits import services as credits_services

from .conftest import buy, client_for, deliver, make_user

pytestmark = pytest.mark.django_db

SIGNING_SECRET = "whsec_ADMINsigningSECRET0000abcd"
STRIPE_URL = "/admin/catalog/integrationprovider/stripe/change/"


def every_history_value() -> str:
    return "\n".join(repr(row) for model in apps.get_app_config("audit").get_models()
                     for row in model._default_manager.values())


def test_a_pack_is_added_in_the_admin_and_its_price_change_is_in_the_history(admin_client, admin_user):
    response = admin_client.post("/admin/billing/creditpack/add/", {
        "name": "Team", "credits": "5000", "price_amount": "15000", "currency": "usd", "is_active": "on",
        "position": "4"})
    assert response.status_code == 302
    pack = CreditPack.objects.get(name="Team")
    url = f"/admin/billing/creditpack/{pack.pk}/change/"
    assert submit_change_form(admin_client, url, price_amount="14000").status_code == 302
    change = ConfigChange.objects.latest("id")
    assert (change.actor, change.object_repr) == (admin_user, str(CreditPack.objects.get(pk=pack.pk)))
    assert change.changes == [{"field": "price_amount", "label": "Price", "old": 15000, "new": 14000}]
    assert "140.00 USD" in admin_client.get("/admin/billing/creditpack/").content.decode()


@pytest.mark.parametrize("field, value, message", [
    ("currency", "USD", "three-letter ISO code in lower case"),
    ("price_amount", "0", "price is above 0"),
    ("credits", "0", "at least 1 credit"),
])
def test_a_bad_pack_is_refused_with_the_rules_words(admin_client, field, value, message):
    form = {"name": "Bad", "credits": "10", "price_amount": "100", "currency": "usd", "position": "0", field: value}
    response = admin_client.post("/admin/billing/creditpack/add/", form)
    assert response.status_code == 200 and message in response.content.decode()
    assert not CreditPack.objects.filter(name="Bad").exists()


def test_the_signing_secret_is_write_only_masked_and_never_in_the_history(admin_client, admin_user, caplog):
    caplog.set_level(logging.DEBUG)
    provider = IntegrationProvider.objects.get(pk="stripe")
    response = submit_change_form(admin_client, STRIPE_URL, new_signing_secret=SIGNING_SECRET)
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.get_signing_secret() == SIGNING_SECRET and not provider.has_key
    version = provider.history.first()
    assert (version.signing_secret_change, version.api_key_change, version.history_user) == ("replaced", "", admin_user)
    assert ConfigChange.objects.latest("id").changes == [
        {"field": "signing_secret", "label": "Signing secret", "old": None, "new": "signing secret replaced"}]
    page = admin_client.get(STRIPE_URL).content.decode()
    assert provider.signing_secret_hint in page and "…abcd" in provider.signing_secret_hint
    history_page = admin_client.get(STRIPE_URL.replace("change/", "history/")).content.decode()
    assert "signing secret replaced" in history_page

    assert submit_change_form(admin_client, STRIPE_URL, clear_signing_secret="on").status_code == 302
    assert provider.history.first().signing_secret_change == "cleared"
    historical_columns = {f.name for f in type(version)._meta.get_fields()}
    assert not {"signing_secret_encrypted", "signing_secret_hint"} & historical_columns
    for text in [every_history_value(), caplog.text, page, history_page]:
        assert SIGNING_SECRET not in text and provider.signing_secret_encrypted not in text


def test_both_secrets_at_once_is_one_version_and_rotation_re_encrypts_the_secret(admin_client, settings):
    from cryptography.fernet import Fernet

    provider = IntegrationProvider.objects.get(pk="stripe")
    before = provider.history.count()
    submit_change_form(admin_client, STRIPE_URL, new_api_key="sk_test_0123456789abcdef",
                       new_signing_secret=SIGNING_SECRET)
    assert provider.history.count() == before + 1
    settings.CREDITGATE_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.CREDITGATE_ENCRYPTION_KEYS]
    provider.refresh_from_db()
    old = provider.signing_secret_encrypted
    assert catalog_services.provider_keys_rotate() == 2  # its key and its signing secret
    provider.refresh_from_db()
    assert provider.signing_secret_encrypted != old and provider.get_signing_secret() == SIGNING_SECRET
    assert provider.history.first().signing_secret_change == "reencrypted"
    settings.CREDITGATE_ENCRYPTION_KEYS = settings.CREDITGATE_ENCRYPTION_KEYS[:1]
    assert provider.get_signing_secret() == SIGNING_SECRET  # readable with the newest key alone


def test_both_new_and_clear_is_refused(admin_client):
    response = submit_change_form(admin_client, STRIPE_URL, new_signing_secret=SIGNING_SECRET,
                                  clear_signing_secret="on")
    assert response.status_code == 200
    assert "Either enter a new signing secret or clear the stored one" in response.content.decode()
    assert not IntegrationProvider.objects.get(pk="stripe").has_signing_secret


def test_the_operator_sees_payments_reports_and_shortfalls(admin_client, stripe, pack):
    user = make_user()
    _, event = buy(client_for(user), stripe, pack)
    deliver(event, stripe)
    intent = event["data"]["object"]["payment_intent"]
    account = credits_services.account_for_user(user=user)
    hold, _ = credits_services.hold_place(account=account, amount=200, idempotency_key="k", fingerprint="f")
    credits_services.hold_capture(hold_id=hold.pk, amount=200)
    stripe.refund(intent, pack.price_amount)
    deliver(stripe.take_held()[0], stripe)
    forged = {**event, "id": "evt_mismatch"}
    forged["data"] = {"object": {**event["data"]["object"], "id": "cs_test_unknown", "metadata": {}}}
    deliver(forged, stripe)

    payments = admin_client.get("/admin/billing/payment/").content.decode()
    assert "12.00 USD" in payments and "250" in payments
    events = admin_client.get("/admin/billing/stripeevent/?attention=yes").content.decode()
    assert "unknown_session" in events
    shortfalls = admin_client.get("/admin/billing/shortfall/").content.decode()
    assert "alice" in shortfalls and ">200<" in shortfalls
    assert admin_client.get("/admin/billing/checkoutsession/").status_code == 200
    assert admin_client.get("/admin/billing/lowbalanceemail/").status_code == 200
    assert admin_client.get(f"/admin/billing/shortfall/{account.pk}/change/").status_code == 200


def test_unsent_emails_can_be_sent_again_from_the_admin(admin_client, sandbox, monkeypatch):
    from creditgate.core import runtime

    sent: list[tuple] = []

    def send(name, *args, **options) -> bool:
        sent.append(args)
        return True

    monkeypatch.setattr(runtime, "send", send)
    user = make_user()
    account = user.credit_membership.account
    unsent = LowBalanceEmail.objects.create(account=account, to="a@example.com", available=3, threshold=10)
    LowBalanceEmail.objects.create(account=account, to="a@example.com", available=3, threshold=10,
                                   sent_at="2026-01-01T00:00:00Z")
    response = admin_client.post("/admin/billing/lowbalanceemail/", {
        "action": "send_again",
        "_selected_action": [str(pk) for pk in LowBalanceEmail.objects.values_list("pk", flat=True)]})
    assert response.status_code == 302
    assert sent == [(unsent.pk,)]
