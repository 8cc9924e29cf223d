"""A price is traceable from a ledger entry's rate snapshot to the history version that set it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from creditgate.audit.tests.admin_forms import submit_change_form
from creditgate.catalog import history
from creditgate.catalog.models import AIModelConfig, ImageTier
from creditgate.credits import pricing
from creditgate.credits import services as credits_services
from creditgate.credits.models import EntryKind, LedgerEntry

pytestmark = pytest.mark.django_db


def image_price(model: AIModelConfig) -> int:
    price = model.credits_per_image
    assert price is not None, "an image model in a tier has a price"
    return price


def set_price(client, model: AIModelConfig, credits: int):
    """An image's price is its tier's: set on the tier's page; returns the tier's new version."""
    response = submit_change_form(client, f"/admin/catalog/imagetier/{model.quality_tier_id}/change/",
                                  credits_per_image=str(credits))
    assert response.status_code == 302
    model.refresh_from_db()  # its cached tier (and price) too
    return ImageTier.objects.get(tier=model.quality_tier_id).history.first()


def charge_images(model: AIModelConfig, count: int) -> LedgerEntry:
    """What the charge path writes for a job: a hold and a capture, both carrying the rate."""
    user = get_user_model().objects.create_user(username=f"payer{LedgerEntry.objects.count()}")
    account = credits_services.account_for_user(user=user)
    credits_services.credits_grant(account=account, amount=1000, reason="test")
    price = pricing.price_images(model=model, count=count)
    hold, _ = credits_services.hold_place(account=account, amount=price.credits, idempotency_key="k",
                                          fingerprint="f", reference="job:test", rate=price.rate)
    assert credits_services.hold_capture(hold_id=hold.pk, amount=price.credits, rate=price.rate)
    return LedgerEntry.objects.get(hold=hold, kind=EntryKind.CAPTURE)


def test_the_entry_page_links_the_version_in_force_when_it_was_charged(admin_client, admin_user):
    model = AIModelConfig.objects.get(quality_tier="premium", is_active=True)
    old = image_price(model)
    set_by_admin = set_price(admin_client, model, old + 3)
    entry = charge_images(model, 2)
    later = set_price(admin_client, model, old + 5)  # a later price must not be blamed for this entry

    page = admin_client.get(f"/admin/credits/ledgerentry/{entry.pk}/change/").content.decode()

    version_url = f"/admin/catalog/imagetier/premium/history/{set_by_admin.history_id}/"
    assert f'href="{version_url}"' in page
    assert f"{model.model_name} (Premium tier): credits per image {old + 3}, set on" in page
    assert f"by {admin_user.username}" in page
    assert f"/history/{later.history_id}/" not in page
    assert admin_client.get(version_url).status_code == 200


def test_the_origin_is_the_version_that_set_the_price_not_a_later_unrelated_edit(admin_client):
    model = AIModelConfig.objects.get(quality_tier="basic", is_active=True)
    set_by_admin = set_price(admin_client, model, image_price(model) + 1)
    # The tier is saved again afterwards (its models reordered), its price unchanged.
    submit_change_form(admin_client, "/admin/catalog/imagetier/basic/change/")
    ImageTier.objects.get(tier="basic").save()
    model.refresh_from_db()
    entry = charge_images(model, 1)

    [origin] = history.rate_origins(rate=entry.rate, at=entry.created_at)

    assert origin.matches
    assert origin.introduced_by is not None and origin.in_force is not None and origin.change is not None
    assert origin.introduced_by.history_id == set_by_admin.history_id
    assert origin.in_force.history_id > set_by_admin.history_id
    assert origin.change.changes == [{"field": "credits_per_image", "label": "Credits per image",
                                      "old": set_by_admin.credits_per_image - 1,
                                      "new": set_by_admin.credits_per_image}]


def test_a_rate_unchanged_since_the_history_began_says_so(admin_client):
    model = AIModelConfig.objects.get(quality_tier="basic", is_active=True)
    entry = charge_images(model, 1)
    page = admin_client.get(f"/admin/credits/ledgerentry/{entry.pk}/change/").content.decode()
    baseline = ImageTier.objects.get(tier="basic").history.order_by("history_id").first()
    assert (f"{model.model_name} (Basic tier): credits per image {model.credits_per_image}, recorded when the "
            "history began (" in page)
    assert f"/admin/catalog/imagetier/basic/history/{baseline.history_id}/" in page


def test_an_article_rate_names_both_of_its_models():
    text_model = AIModelConfig.objects.get(model_type="text", is_default=True)
    image_model = AIModelConfig.objects.get(model_name="google:2@1")  # the Quality tier's backup
    rate = pricing.price_total(pricing.price_text_tokens(model=text_model, total_tokens=900),
                               pricing.price_images(model=image_model, count=2)).rate

    origins = history.rate_origins(rate=rate, at=timezone.now())

    assert [(o.model_name, o.field, o.price) for o in origins] == [
        (text_model.model_name, "tokens_per_credit", text_model.tokens_per_credit),
        (image_model.model_name, "credits_per_image", image_model.credits_per_image)]
    assert all(o.introduced_by is not None and o.matches for o in origins)


def test_an_entry_older_than_the_history_says_so(admin_client):
    model = AIModelConfig.objects.get(quality_tier="basic", is_active=True)
    entry = charge_images(model, 1)
    [origin] = history.rate_origins(rate=entry.rate, at=timezone.now() - dt.timedelta(days=400))
    assert origin.in_force is None and origin.introduced_by is None

    # An installation whose history began after this entry was charged.
    ImageTier.objects.get(tier="basic").history.all().delete()
    page = admin_client.get(f"/admin/credits/ledgerentry/{entry.pk}/change/").content.decode()
    assert "the configuration history does not reach back to" in page


def test_entries_without_a_catalog_rate_show_nothing(admin_client):
    assert history.rate_origins(rate=None, at=timezone.now()) == []
    assert history.rate_origins(rate={"note": "manual"}, at=timezone.now()) == []
