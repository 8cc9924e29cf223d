"""The model lifecycle check end to end against the sandbox: models dropped or announced for
retirement by a provider are flagged, a tier about to lose its last model is warned about (the
command's exit status, the admin), and nothing about routing changes without the operator."""

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from creditgate.catalog import selectors
from creditgate.catalog.models import AIModelConfig, IntegrationProvider, ModelLifecycle
from creditgate.providers.tasks import check_model_lifecycle

pytestmark = pytest.mark.django_db


def check() -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("check_model_lifecycle", stdout=out)
    except SystemExit as exc:
        assert isinstance(exc.code, int)  # the command exits with a status, not a message
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def status(name: str) -> tuple[str, dt.date | None]:
    row = ModelLifecycle.objects.get(model__model_name=name)
    return row.status, row.shutdown_on


def soon(days: int) -> str:
    return (timezone.localdate() + dt.timedelta(days=days)).isoformat()


# --- The check ----------------------------------------------------------------------------------

def test_with_every_model_offered_the_check_passes_and_records_it(sandbox):
    code, out = check()
    assert code == 0, out
    assert "openai: 3 catalog model(s) checked" in out and "runware: 3 catalog model(s) checked" in out
    assert status("runware:97@1") == ("listed", None) and status("google:2@1") == ("listed", None)
    # The seeded dall-e-3 is inactive; its shutdown is flagged, but no tier depends on it.
    assert status("dall-e-3") == ("retiring", dt.date(2026, 5, 12))
    assert "dall-e-3 (openai, inactive): retirement announced on 2026-05-12" in out


def test_a_tiers_only_model_dropped_by_its_provider_is_flagged_and_the_check_fails(sandbox, admin_client):
    sandbox.configure(dropped_models=["runware:97@1"])
    code, out = check()
    assert code == 1
    assert status("runware:97@1") == ("gone", None)
    assert "runware:97@1 (runware, active): no longer offered" in out
    assert "WARNING: The Basic tier has lost its last model" in out
    # Nothing changed without the operator: the model is still active and routed.
    assert AIModelConfig.objects.get(model_name="runware:97@1").is_active
    assert selectors.routing_get().image_models["basic"].model_name == "runware:97@1"
    page = admin_client.get("/admin/catalog/aimodelconfig/").content.decode()
    assert f"GONE since {timezone.localdate()}" in page and "The Basic tier has lost its last model" in page


def test_a_model_with_a_backup_is_flagged_but_its_tier_is_not_at_risk(sandbox):
    sandbox.configure(dropped_models=["gpt-image-2"])
    code, out = check()
    assert code == 0, out
    assert status("gpt-image-2") == ("gone", None)
    assert "gpt-image-2 (openai, active): no longer offered" in out and "WARNING" not in out


def test_a_tier_whose_every_model_announces_retirement_is_warned_about_ahead_of_time(sandbox, admin_client):
    # OpenAI gives a date; Runware's search only says "deprecated".
    sandbox.configure(retiring_models={"gpt-image-2": soon(20), "google:2@1": soon(25)})
    code, out = check()
    assert code == 1
    assert status("gpt-image-2") == ("retiring", timezone.localdate() + dt.timedelta(days=20))
    assert status("google:2@1") == ("retiring", None)
    assert "WARNING: The Quality tier may lose its last model any day" in out
    assert f"gpt-image-2: openai retires it on {soon(20)}" in out
    assert "google:2@1: runware announced its retirement (no date given)" in out
    page = admin_client.get("/admin/catalog/aimodelconfig/").content.decode()
    assert f"retiring {soon(20)}" in page and "retiring (no date)" in page


def test_a_dated_retirement_beyond_the_warning_window_is_flagged_without_a_warning(sandbox, settings):
    settings.CREDITGATE_RETIREMENT_WARNING_DAYS = 30
    sandbox.configure(retiring_models={"gpt-5.1": soon(45)})
    code, out = check()
    assert code == 0 and "WARNING" not in out
    sandbox.configure(retiring_models={"gpt-5.1": soon(10)})
    code, out = check()
    assert code == 1
    assert f"WARNING: Text generation loses its last model on {soon(10)}, in 10 days" in out


def test_a_provider_that_cannot_answer_makes_the_check_incomplete(sandbox):
    sandbox.configure(api_key="another-key")  # ours is refused now
    code, out = check()
    assert code == 2
    assert "openai: COULD NOT CHECK" in out and "runware: COULD NOT CHECK" in out


def test_a_switched_off_provider_is_skipped_not_an_error(sandbox):
    IntegrationProvider.objects.filter(provider_id="openai").update(is_active=False)
    code, out = check()
    assert code == 0, out
    assert "openai: not checked (The AI provider OpenAI is switched off.)" in out


def test_a_model_offered_again_is_cleared_and_its_since_follows_the_status(sandbox):
    sandbox.configure(dropped_models=["gpt-image-2"])
    check()
    ModelLifecycle.objects.filter(model__model_name="gpt-image-2").update(since=dt.date(2026, 1, 1))
    check()
    assert ModelLifecycle.objects.get(model__model_name="gpt-image-2").since == dt.date(2026, 1, 1)
    sandbox.configure(dropped_models=[])
    check()
    row = ModelLifecycle.objects.get(model__model_name="gpt-image-2")
    assert (row.status, row.since) == ("listed", timezone.localdate())


def test_the_beat_task_runs_the_same_check(sandbox):
    sandbox.configure(dropped_models=["google:4@2"])
    assert check_model_lifecycle() == 1
    assert status("google:4@2") == ("gone", None)


def test_the_operator_can_adopt_the_announced_date_and_only_then_routing_changes(sandbox, admin_client):
    sandbox.configure(retiring_models={"gpt-image-2": soon(5)})
    check()
    model = AIModelConfig.objects.get(model_name="gpt-image-2")
    assert model.retires_on is None
    admin_client.post("/admin/catalog/aimodelconfig/", {"action": "adopt_provider_retirement",
                                                        "_selected_action": [model.pk]})
    model.refresh_from_db()
    assert model.retires_on == timezone.localdate() + dt.timedelta(days=5)
    response = admin_client.post("/admin/catalog/aimodelconfig/", {
        "action": "adopt_provider_retirement",
        "_selected_action": [AIModelConfig.objects.get(model_name="runware:97@1").pk]}, follow=True)
    assert "its provider has announced no retirement date" in response.content.decode()


def test_the_admin_action_runs_the_check(sandbox, admin_client):
    sandbox.configure(dropped_models=["google:2@1"])
    selected = AIModelConfig.objects.first()
    assert selected is not None
    response = admin_client.post("/admin/catalog/aimodelconfig/", {
        "action": "check_lifecycle", "_selected_action": [selected.pk]}, follow=True)
    page = response.content.decode()
    assert "google:2@1 (runware, active): no longer offered" in page
    assert status("google:2@1") == ("gone", None)
