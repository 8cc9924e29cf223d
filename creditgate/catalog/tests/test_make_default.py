"""make-default: one default per type, swapped in one transaction."""

import threading

import pytest
from django.db import connection

from creditgate.catalog import services
from creditgate.catalog.models import AIModelConfig
from creditgate.core.errors import InvalidRequest


@pytest.mark.django_db
def test_swaps_the_default(text_model_factory):
    old = AIModelConfig.objects.get(model_type="text", is_default=True)
    new = text_model_factory()
    services.model_make_default(model=new)
    assert list(AIModelConfig.objects.filter(model_type="text", is_default=True)) == [new]
    old.refresh_from_db()
    assert not old.is_default


@pytest.mark.django_db
def test_the_new_default_is_served_on_the_next_request(client, text_model_factory):
    client.get("/api/v1/system/ai-config/")
    services.model_make_default(model=text_model_factory())
    assert client.get("/api/v1/system/ai-config/").json()["text_model"] == "test-text"


@pytest.mark.django_db
def test_refuses_an_inactive_model_and_changes_nothing(text_model_factory):
    inactive = text_model_factory(is_active=False)
    with pytest.raises(InvalidRequest):
        services.model_make_default(model=inactive)
    assert AIModelConfig.objects.get(model_type="text", is_default=True).model_name == "gpt-5.1"


@pytest.mark.django_db
def test_is_idempotent(text_model_factory):
    gpt = AIModelConfig.objects.get(model_name="gpt-5.1")
    services.model_make_default(model=gpt)
    assert AIModelConfig.objects.filter(model_type="text", is_default=True).get() == gpt


@pytest.mark.django_db
def test_a_failure_midway_leaves_the_old_default(text_model_factory, monkeypatch):
    new = text_model_factory()

    def boom(*args, **kwargs):
        raise RuntimeError("crash after the old default was unset")

    monkeypatch.setattr(AIModelConfig, "save", boom)
    with pytest.raises(RuntimeError):
        services.model_make_default(model=new)
    assert AIModelConfig.objects.get(model_type="text", is_default=True).model_name == "gpt-5.1"


@pytest.mark.postgres
def test_two_concurrent_swaps_leave_exactly_one_default(postgres_only, transactional_db, seeded_catalog):
    openai = AIModelConfig.objects.get(model_name="gpt-5.1").provider
    candidates = [AIModelConfig.objects.create(model_name=f"race-{i}", display_name=f"Race {i}",
                                               model_type="text", provider=openai, tokens_per_credit=100)
                  for i in range(2)]
    for _round in range(5):
        barrier = threading.Barrier(len(candidates))
        errors: list[BaseException] = []

        def swap(model, barrier=barrier, errors=errors):
            try:
                barrier.wait()
                services.model_make_default(model=AIModelConfig.objects.get(pk=model.pk))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=swap, args=(m,)) for m in candidates]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        defaults = list(AIModelConfig.objects.filter(model_type="text", is_default=True))
        assert len(defaults) == 1
        assert defaults[0] in candidates
