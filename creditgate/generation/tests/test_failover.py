"""A tier that stays up: when its model's provider fails, the tier's next model serves the rest, at
the tier's one price; a provider that keeps failing is skipped by its circuit breaker."""

import pytest

from creditgate.catalog.models import AIModelConfig, IntegrationProvider
from creditgate.core import reconciliation, runtime
from creditgate.generation import intake
from creditgate.generation.models import Job
from creditgate.generation.tests.conftest import balance, make_user
from creditgate.providers import breaker

pytestmark = pytest.mark.usefixtures("gen_env")

OPENAI_IMAGES = "openai.images.generations"
RUNWARE_IMAGES = "runware.imageInference"


@pytest.fixture
def basic_backup_on_openai():
    """Basic's backup on the other provider (the seeded catalog has one for Quality only)."""
    return AIModelConfig.objects.create(
        model_name="test-basic-backup", display_name="Basic backup", model_type="image",
        provider=IntegrationProvider.objects.get(provider_id="openai"), quality_tier_id="basic", priority=50,
        sizes=["1024x1024"], max_images_per_call=10)


def run_images(user, tier: str, count: int) -> Job:
    job, _ = intake.job_create_images(user=user, prompt="a red fox", tier=tier, count=count)
    runtime.wait_idle()
    job.refresh_from_db()
    return job


def made_by(job: Job) -> dict[str, int]:
    models: dict[str, int] = {}
    for name in job.images.values_list("model_name", flat=True):
        models[name] = models.get(name, 0) + 1
    return models


def test_basic_is_served_by_its_backup_while_its_provider_is_down(sandbox, basic_backup_on_openai):
    sandbox.configure(outages={"runware": "server_error"})
    user = make_user(credits=20)
    job = run_images(user, "basic", 2)

    assert (job.status, job.credits_charged) == ("succeeded", 2)  # the tier's price, whoever served it
    assert made_by(job) == {"test-basic-backup": 2}
    calls = list(job.calls.order_by("started_at", "try_number").values_list("model_name", "status",
                                                                               "units_delivered"))
    # Every try is recorded: the primary's first request and its two retries, then the backup.
    assert calls == [("runware:97@1", "failed", 0)] * 3 + [("test-basic-backup", "succeeded", 2)]
    assert balance(user) == {"balance": 18, "held": 0, "available": 18}
    assert reconciliation.reconciliation_audit() == []


def test_a_content_refusal_does_not_fail_over(sandbox):
    sandbox.fail_next(1, "content_refusal", provider="openai")
    user = make_user(credits=20)
    job = run_images(user, "quality", 1)

    assert (job.status, job.error_code, job.credits_charged) == ("failed", "content_refused", 0)
    assert sandbox.stats.get(RUNWARE_IMAGES, 0) == 0  # the backup was not asked the same thing
    assert balance(user) == {"balance": 20, "held": 0, "available": 20}


def test_a_batch_of_8_whose_primary_fails_after_3_images_gets_8_from_two_models(sandbox, settings):
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    AIModelConfig.objects.filter(model_name="gpt-image-2").update(max_images_per_call=1)
    sandbox.fail_next(100, "server_error", provider="openai", after=3)  # OpenAI answers 3 times, then fails
    user = make_user(credits=100)
    job = run_images(user, "quality", 8)

    assert (job.status, job.images.count(), job.credits_charged) == ("succeeded", 8, 40)  # 8 x 5, once each
    assert made_by(job) == {"gpt-image-2": 3, "google:2@1": 5}
    assert sorted(job.images.values_list("index", flat=True)) == list(range(8))
    assert balance(user)["available"] == 60
    assert reconciliation.reconciliation_audit() == []


def test_the_breaker_skips_a_failing_provider_during_its_cool_down_then_one_trial_brings_it_back(
        sandbox, settings, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(breaker, "clock", lambda: now[0])
    settings.CREDITGATE_BREAKER_FAILURES = 2
    settings.CREDITGATE_BREAKER_COOLDOWN_SECONDS = 30
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    sandbox.configure(outages={"openai": "server_error"})
    user = make_user(credits=200)

    for _ in range(2):  # two failures in a row: the breaker opens
        assert made_by(run_images(user, "quality", 1)) == {"google:2@1": 1}
    assert breaker.breaker_state("openai").state == "open"
    asked = sandbox.stats[OPENAI_IMAGES]
    for _ in range(3):  # during the cool-down the primary is not even called
        assert made_by(run_images(user, "quality", 1)) == {"google:2@1": 1}
    assert sandbox.stats[OPENAI_IMAGES] == asked

    sandbox.configure(outages={})  # the provider is back
    now[0] += 31  # the cool-down is over: one trial call decides
    assert made_by(run_images(user, "quality", 1)) == {"gpt-image-2": 1}
    assert sandbox.stats[OPENAI_IMAGES] == asked + 1
    assert breaker.breaker_state("openai").state == "closed"
    assert made_by(run_images(user, "quality", 2)) == {"gpt-image-2": 2}
    spent = 5 * (2 + 3 + 1 + 2)
    assert balance(user) == {"balance": 200 - spent, "held": 0, "available": 200 - spent}


def test_all_models_of_a_tier_down_fails_the_job_uncharged_and_ai_config_drops_the_tier(sandbox, settings, client):
    settings.CREDITGATE_BREAKER_FAILURES = 1
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    sandbox.configure(outages={"openai": "server_error", "runware": "server_error"})
    user = make_user(credits=20)
    job = run_images(user, "quality", 2)

    assert (job.status, job.credits_charged) == ("failed", 0)
    assert "No credits were charged" in job.error_message
    assert list(job.calls.values_list("model_name", flat=True).order_by("started_at")) == ["gpt-image-2", "google:2@1"]
    assert balance(user) == {"balance": 20, "held": 0, "available": 20}
    tiers = [t["tier"] for t in client.get("/api/v1/system/ai-config/").json()["image_qualities"]]
    assert "quality" not in tiers  # while its models' breakers are open
    assert reconciliation.reconciliation_audit() == []


def test_the_job_api_and_page_say_which_model_made_each_image_of_a_batch_served_by_two(sandbox, settings, client):
    settings.CREDITGATE_PROVIDER_MAX_RETRIES = 0
    AIModelConfig.objects.filter(model_name="gpt-image-2").update(max_images_per_call=1)
    sandbox.fail_next(100, "server_error", provider="openai", after=2)  # OpenAI makes 2, then fails
    user = make_user(credits=100)
    client.force_login(user)

    response = client.post("/api/v1/images/generations/", {"prompt": "a red fox", "tier": "quality", "count": 4},
                           content_type="application/json")
    assert response.status_code == 202, response.content
    runtime.wait_idle()
    job = client.get(f"/api/v1/jobs/{response.json()['id']}/").json()

    assert (job["status"], job["credits_charged"]) == ("succeeded", 20)  # 4 x the tier's price, whoever served it
    by_index = {int(image["url"].rstrip("/").rsplit("/", 1)[1]): image["model"] for image in job["images"]}
    assert by_index == {0: "gpt-image-2", 1: "gpt-image-2", 2: "google:2@1", 3: "google:2@1"}

    # For people, each model by its name in the catalog, never the provider's id (issue 26).
    names = dict(AIModelConfig.objects.values_list("model_name", "display_name"))
    assert [image["model_display_name"] for image in job["images"]] == [names[by_index[i]] for i in range(4)]
    page = client.get(f"/jobs/{job['id']}/").content.decode()
    assert page.count('class="image-model"') == 4
    assert page.count(f">{names['gpt-image-2']}</small>") == 2 and page.count(f">{names['google:2@1']}</small>") == 2

    schema = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    assert schema["Job"]["properties"]["images"]["items"] == {"$ref": "#/components/schemas/JobImage"}
    assert "model" in schema["JobImage"]["required"]
