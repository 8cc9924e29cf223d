"""The providers' model lists as the sandbox serves them (OpenAI's GET /v1/models, Runware's
modelSearch task), with models dropped or announced for retirement; the adapters' list_models;
and the sandbox's per-provider outage knob."""

import datetime as dt

import pytest
import requests

from creditgate.catalog.models import AIModelConfig
from creditgate.providers.base import ProviderServerError, call_sync
from creditgate.providers.registry import adapter_for

pytestmark = pytest.mark.django_db


# --- The sandbox's model lists ------------------------------------------------------------------

def test_openai_model_list_drops_a_model_and_announces_a_retirement(sandbox):
    sandbox.configure(dropped_models=["gpt-image-2"], retiring_models={"gpt-5.1": "2027-04-01"})
    body = requests.get(f"{sandbox.url}/openai/v1/models", headers={"Authorization": "Bearer sandbox"}).json()
    listed = {m["id"]: m["shutdown_date"] for m in body["data"]}
    assert "gpt-image-2" not in listed
    assert listed["gpt-5.1"] == "2027-04-01" and listed["dall-e-3"] == "2026-05-12"
    # A dropped model is refused as the real API refuses a removed one.
    error = requests.post(f"{sandbox.url}/openai/v1/images/generations", headers={"Authorization": "Bearer sandbox"},
                          json={"model": "gpt-image-2", "prompt": "a fox"})
    assert error.status_code == 404 and error.json()["error"]["code"] == "model_not_found"


def test_runware_model_search_is_shaped_like_runwares_task(sandbox):
    sandbox.configure(retiring_models={"google:4@2": "2027-01-01"}, dropped_models=["runware:97@3"])
    tasks = [{"taskType": "modelSearch", "taskUUID": "6f1f9d0e-0000-4000-8000-000000000001", "search": "google:4@2"},
             {"taskType": "modelSearch", "taskUUID": "6f1f9d0e-0000-4000-8000-000000000002", "search": "hidream"}]
    body = requests.post(f"{sandbox.url}/runware/v1", headers={"Authorization": "Bearer sandbox"}, json=tasks).json()
    first, second = body["data"]
    assert (first["taskType"], first["taskUUID"], first["totalResults"]) == (
        "modelSearch", tasks[0]["taskUUID"], 1)
    card = first["results"][0]
    assert {"air", "name", "version", "category", "architecture", "tags", "heroImage", "private",
            "comment"} <= set(card)
    assert (card["air"], card["status"]) == ("google:4@2", "deprecated")
    assert [c["air"] for c in second["results"]] == ["runware:97@1", "runware:97@2"]  # 97@3 was dropped
    refused = requests.post(f"{sandbox.url}/runware/v1", headers={"Authorization": "Bearer sandbox"}, json=[
        {"taskType": "imageInference", "taskUUID": "6f1f9d0e-0000-4000-8000-000000000003", "model": "runware:97@3",
         "positivePrompt": "a fox", "width": 1024, "height": 1024}])
    assert refused.status_code == 404 and refused.json()["errors"][0]["code"] == "modelNotFound"


def test_the_sandbox_refuses_bad_lifecycle_knobs(sandbox):
    for knobs in ({"dropped_models": "gpt-image-2"}, {"retiring_models": {"gpt-image-2": "soon"}},
                  {"outages": {"anthropic": "server_error"}}, {"outages": {"runware": "content_refusal"}}):
        response = requests.post(f"{sandbox.url}/_sandbox/config", json=knobs)
        assert response.status_code == 400, knobs


# --- The adapters -------------------------------------------------------------------------------

def test_each_adapter_lists_what_its_provider_offers_now(sandbox):
    sandbox.configure(dropped_models=["google:4@2"], retiring_models={"gpt-image-2": "2026-12-24",
                                                                      "runware:97@1": "2027-02-01"})
    openai = {m.name: m for m in call_sync(adapter_for(provider_id="openai").list_models,
        names=["gpt-5.1", "gpt-image-2", "no-such-model"])}
    assert set(openai) == {"gpt-5.1", "gpt-image-2"}
    assert (openai["gpt-image-2"].shutdown_on, openai["gpt-image-2"].deprecated) == (dt.date(2026, 12, 24), True)
    assert (openai["gpt-5.1"].shutdown_on, openai["gpt-5.1"].deprecated) == (None, False)

    runware = {m.name: m for m in call_sync(adapter_for(provider_id="runware").list_models,
        names=["runware:97@1", "google:4@2", "google:2@1"])}
    assert set(runware) == {"runware:97@1", "google:2@1"}  # found by exact AIR; the dropped one is not
    assert (runware["runware:97@1"].deprecated, runware["runware:97@1"].shutdown_on) == (True, None)
    assert not runware["google:2@1"].deprecated
    assert sandbox.stats["runware.modelSearch"] == 3  # one task per model, in one request
    assert sandbox.stats["runware"] == 1


# --- The outage knob ----------------------------------------------------------------------------

def test_a_provider_outage_fails_that_providers_calls_only(sandbox):
    sandbox.configure(outages={"runware": "server_error"})
    runware_model = AIModelConfig.objects.get(model_name="runware:97@1")
    with pytest.raises(ProviderServerError):
        call_sync(adapter_for(provider_id="runware").generate_image_batch, model=runware_model, prompt="a fox", n=1)
    assert sandbox.stats["runware.imageInference"] == 3  # the first call and its two retries
    openai_model = AIModelConfig.objects.get(model_name="gpt-image-2")
    outcomes = call_sync(adapter_for(provider_id="openai").generate_image_batch,
        model=openai_model, prompt="a fox", n=1)
    assert [o.ok for o in outcomes] == [True]
    # The model list still answers during an outage: a lifecycle check is not an outage detector.
    assert call_sync(adapter_for(provider_id="runware").list_models, names=["runware:97@1"])
    sandbox.configure(outages={})
    assert call_sync(adapter_for(provider_id="runware").generate_image_batch,
        model=runware_model, prompt="a fox", n=1)[0].ok
