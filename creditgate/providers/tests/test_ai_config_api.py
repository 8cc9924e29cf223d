"""GET /api/v1/system/ai-config/: the design note's shape, cached, ETag, invalidated by any change."""

import datetime as dt
import uuid

import pytest
from django.core.cache import cache
from django.utils import timezone

from creditgate.catalog import ai_config_cache, services
from creditgate.catalog.models import (
    AIModelConfig,
    GlobalIntegrationSettings,
    ImageTier,
    IntegrationProvider,
)
from creditgate.core.tests.polling import wait_for
from creditgate.providers import ai_config

pytestmark = pytest.mark.django_db

URL = "/api/v1/system/ai-config/"


@pytest.fixture(autouse=True)
def _fresh_process_memo():
    # Each test starts as a freshly started process would.
    ai_config_cache._memos.clear()
    yield
    ai_config_cache._memos.clear()


def another_process_bumps_the_version(token: str) -> None:
    """What another process's invalidation does: replace the shared version token. This process
    reads it at most every CHECK_SECONDS: the test moves this process's last read back by that."""
    cache.set(ai_config_cache._VERSION_KEY, token, timeout=None)
    version, read_at = ai_config_cache._seen
    ai_config_cache._seen = (version, read_at - ai_config_cache.CHECK_SECONDS)


def _tiers(response) -> list[str]:
    return [q["tier"] for q in response.json()["image_qualities"]]


def test_shape_and_values_from_the_seed(client):
    response = client.get(URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["image_qualities"] == [
        {"tier": "basic", "credits_per_image": 1, "label": "Basic"},
        {"tier": "quality", "credits_per_image": 5, "label": "Quality"},
        {"tier": "premium", "credits_per_image": 15, "label": "Premium"},
    ]
    assert body["text_model"] == "gpt-5.1"
    assert body["image_style"] == "photorealistic"
    assert body["max_images"] == 4
    assert body["max_images_per_request"] == 8


def test_anyone_may_read_it_even_with_a_bad_token(client):
    response = client.get(URL, HTTP_AUTHORIZATION="Token not-a-real-token")
    assert response.status_code == 200


def test_etag_answers_304_and_a_stale_etag_gets_the_body(client):
    first = client.get(URL)
    etag = first["ETag"]
    assert etag.startswith('"') and first["Cache-Control"] == "no-cache"

    again = client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    assert client.get(URL, HTTP_IF_NONE_MATCH=f'"other", W/{etag}').status_code == 304

    stale = client.get(URL, HTTP_IF_NONE_MATCH='"something-else"')
    assert stale.status_code == 200
    assert stale.json() == first.json()


def test_etag_changes_when_the_payload_does(client):
    etag = client.get(URL)["ETag"]
    settings_row = GlobalIntegrationSettings.objects.get()
    settings_row.image_style = "watercolour"
    settings_row.save()
    response = client.get(URL, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert response["ETag"] != etag
    assert response.json()["image_style"] == "watercolour"


def test_head_has_headers_and_no_body(client):
    response = client.head(URL)
    assert response.status_code == 200
    assert response.content == b""
    assert response["ETag"] == client.get(URL)["ETag"]


def test_other_methods_are_405_in_the_error_shape(client):
    response = client.post(URL, {}, content_type="application/json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert set(response.json()["error"]) == {"code", "message", "details"}


def test_warm_request_runs_no_query(client, django_assert_num_queries):
    client.get(URL)  # cold: builds and caches
    with django_assert_num_queries(0):
        response = client.get(URL)
    assert response.json()["text_model"] == "gpt-5.1"


def test_a_process_with_an_empty_memory_builds_once_then_runs_no_query(client, django_assert_num_queries):
    client.get(URL)
    ai_config_cache._memos.clear()  # another worker process: nothing in its memory yet
    assert client.get(URL).status_code == 200
    with django_assert_num_queries(0):
        assert client.get(URL).status_code == 200


def test_tier_price_change_shows_on_the_next_request(client):
    client.get(URL)
    tier = ImageTier.objects.get(tier="quality")
    tier.credits_per_image = 6
    tier.save()
    assert client.get(URL).json()["image_qualities"][1] == {"tier": "quality", "credits_per_image": 6,
                                                            "label": "Quality"}


def test_settings_change_shows_on_the_next_request(client):
    client.get(URL)
    row = GlobalIntegrationSettings.objects.get()
    row.max_in_article_images = 2
    row.max_images_per_request = 5
    row.save()
    body = client.get(URL).json()
    assert (body["max_images"], body["max_images_per_request"]) == (2, 5)


def test_inactive_model_takes_its_tier_away(client):
    assert _tiers(client.get(URL)) == ["basic", "quality", "premium"]
    model = AIModelConfig.objects.get(quality_tier="premium", is_active=True)
    model.is_active = False
    model.save()
    assert _tiers(client.get(URL)) == ["basic", "quality"]


def test_inactive_provider_takes_its_models_away_and_a_backup_keeps_the_tier(client):
    client.get(URL)
    openai = IntegrationProvider.objects.get(provider_id="openai")
    openai.is_active = False
    openai.save()
    body = client.get(URL).json()
    # Quality's first model is OpenAI's; its backup on Runware keeps the tier, at the same price.
    assert [(q["tier"], q["credits_per_image"]) for q in body["image_qualities"]] == [
        ("basic", 1), ("quality", 5), ("premium", 15)]
    assert body["text_model"] is None
    AIModelConfig.objects.filter(model_name="google:2@1").update(is_active=False)
    ai_config_cache.ai_config_invalidate()
    assert _tiers(client.get(URL)) == ["basic", "premium"]


def test_without_the_sandbox_a_provider_without_a_key_is_not_served(client, settings):
    settings.CREDITGATE_SANDBOX = False
    assert _tiers(client.get(URL)) == []
    runware = IntegrationProvider.objects.get(provider_id="runware")

    services.provider_update_key(provider=runware, api_key="rw-abcdefghijklmnop")
    assert _tiers(client.get(URL)) == ["basic", "quality", "premium"]  # Quality by its backup on Runware
    settings.CREDITGATE_SANDBOX = True  # served again by the sandbox: a per-process setting, its own entry
    assert _tiers(client.get(URL)) == ["basic", "quality", "premium"]


def test_a_retired_model_stops_being_served(client):
    model = AIModelConfig.objects.get(quality_tier="basic", is_active=True)
    model.retires_on = timezone.localdate()
    model.save()
    assert _tiers(client.get(URL)) == ["quality", "premium"]


def test_cache_lifetime_ends_at_the_next_retirement(client):
    model = AIModelConfig.objects.get(quality_tier="basic", is_active=True)
    model.retires_on = timezone.localdate() + dt.timedelta(days=1)
    model.save()
    client.get(URL)
    snapshot = ai_config.ai_config_snapshot_get()
    midnight = timezone.make_aware(dt.datetime.combine(model.retires_on, dt.time.min)).timestamp()
    assert snapshot.expires_at is not None and snapshot.expires_at <= midnight + 1
    assert "basic" in _tiers(client.get(URL))


def test_a_change_made_by_another_process_is_seen(client, django_assert_num_queries):
    """Another process writes the rows and replaces the shared version token (its own signal does
    that); this process holds the old payload in memory and must not serve it."""
    client.get(URL)
    # The row changes without any signal in this process...
    ImageTier.objects.filter(tier="basic").update(credits_per_image=3)
    with django_assert_num_queries(0):
        assert client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 1  # cached, as designed
    # ...and the other process's invalidation reaches only the shared cache: seen at the next
    # check of the shared version (at most CHECK_SECONDS later), not before.
    cache.set(ai_config_cache._VERSION_KEY, uuid.uuid4().hex, timeout=None)
    assert client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 1
    another_process_bumps_the_version(uuid.uuid4().hex)
    assert client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 3


def test_another_process_change_shows_within_the_check_interval(client, monkeypatch):
    """By the real clock: shown once CHECK_SECONDS have passed after another process's change."""
    monkeypatch.setattr(ai_config_cache, "CHECK_SECONDS", 0.3)
    client.get(URL)
    ImageTier.objects.filter(tier="basic").update(credits_per_image=3)
    cache.set(ai_config_cache._VERSION_KEY, uuid.uuid4().hex, timeout=None)  # another process's change

    wait_for(lambda: client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 3,
             what="the other process's change")


def test_a_memo_built_from_rows_older_than_an_invalidation_is_not_served(client):
    """The race: a request reads the version and the rows, a writer commits and invalidates, then
    the request keeps what it built. It is tagged with the old version and never served."""
    version = ai_config_cache.catalog_version()
    stale, _ = ai_config._ai_config_snapshot_build()
    ImageTier.objects.filter(tier="basic").update(credits_per_image=3)
    ai_config_cache.ai_config_invalidate()
    ai_config_cache._memos["ai-config:sandbox=1"] = ai_config_cache._Memo(stale, version, float("inf"))
    assert client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 3


def test_it_still_answers_when_the_cache_is_down(client, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(ai_config_cache.cache, "get", broken)
    ai_config_cache._seen = (None, 0.0)  # due to read the shared version
    response = client.get(URL)
    assert response.status_code == 200
    assert response.json()["text_model"] == "gpt-5.1"


def test_listed_in_the_openapi_schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.content.decode()
    assert "/api/v1/system/ai-config/" in schema
    assert "AIConfigImageQuality" in schema and "credits_per_image" in schema


def test_an_invalidation_by_a_real_other_process_is_seen(client):
    """A shell or another worker: a separate OS process sharing only the cache (and the database)."""
    import os
    import subprocess
    import sys

    client.get(URL)
    ImageTier.objects.filter(tier="basic").update(credits_per_image=7)  # no signal here
    assert client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 1
    subprocess.run(
        [sys.executable, "-c",
         ("import django; django.setup(); "
         "from creditgate.catalog.ai_config_cache import ai_config_invalidate; ai_config_invalidate()")],
        # It shares the cache; its database (the test database exists only in this process's
        # connection settings) is irrelevant to the invalidation, so it gets the default one.
        env={**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
             "DJANGO_SETTINGS_MODULE": "creditgate.settings"}, check=True, timeout=60,
        capture_output=True)
    version, read_at = ai_config_cache._seen  # seen at the next check, within CHECK_SECONDS
    ai_config_cache._seen = (version, read_at - ai_config_cache.CHECK_SECONDS)
    assert client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 7


def test_a_payload_read_inside_a_rolled_back_transaction_is_not_kept(client):
    from django.db import transaction

    client.get(URL)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        tier = ImageTier.objects.get(tier="basic")
        tier.credits_per_image = 9
        tier.save()
        snapshot = ai_config.ai_config_snapshot_get()  # e.g. a service that reads it mid-change
        assert b'"credits_per_image":9' in snapshot.body
        raise Abort
    assert client.get(URL).json()["image_qualities"][0]["credits_per_image"] == 1


def test_a_warm_request_reads_neither_the_database_nor_the_cache(client, monkeypatch, django_assert_num_queries):
    """With Redis as with the file cache: the shared version is read at most every CHECK_SECONDS."""
    client.get(URL)
    reads = []
    real_get = ai_config_cache.cache.get

    def counted_get(*args, **kwargs):
        reads.append(args)
        return real_get(*args, **kwargs)

    monkeypatch.setattr(ai_config_cache.cache, "get", counted_get)
    with django_assert_num_queries(0):
        for _ in range(20):
            assert client.get(URL).status_code == 200
    assert reads == []


def test_the_shared_version_is_read_again_after_the_check_interval(monkeypatch):
    for n in range(3):
        cache.set(ai_config_cache._VERSION_KEY, f"token-{n}", timeout=None)
        ai_config_cache._seen = (ai_config_cache._seen[0], 0.0)  # the check is due
        assert ai_config_cache.catalog_version() == f"token-{n}"
    cache.set(ai_config_cache._VERSION_KEY, "token-later", timeout=None)
    assert ai_config_cache.catalog_version() == "token-2"  # within CHECK_SECONDS: not read again
