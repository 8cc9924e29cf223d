"""Signed webhooks when a job is final: one delivery per final job that verifies with the README's
snippet, the same event id on every retry, the outbox, the SSRF rules, the delivery log."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone
from standardwebhooks import Webhook

from creditgate.core import runtime
from creditgate.generation.models import Job
from creditgate.webhooks import services
from creditgate.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

from .conftest import client_for, event, member_of, readme_verify


def register(user, url, **extra) -> dict:
    response = client_for(user).post("/api/v1/webhooks/endpoints/", {"url": url, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def generate(user, *, count=1, headers=None) -> dict:
    response = client_for(user).post("/api/v1/images/generations/", {"prompt": "a fox", "tier": "basic",
                                                                      "count": count}, format="json",
                                     headers=headers or {})
    assert response.status_code == 202, response.content
    return response.json()


def wait_delivered(n: int = 1, timeout: float = 20, status=DeliveryStatus.SUCCEEDED) -> list[WebhookDelivery]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = list(WebhookDelivery.objects.filter(status=status))
        if len(done) >= n:
            return done
        time.sleep(0.05)
    raise AssertionError(f"{WebhookDelivery.objects.values_list('status', 'attempts', 'last_error')}")


def test_each_final_job_is_delivered_once_signed_and_verifies_with_the_readme_snippet(owner, receiver, sandbox):
    endpoint = register(owner, receiver.url, description="CMS")
    secret = endpoint.pop("secret")
    assert secret.startswith("whsec_")
    writer = member_of(owner, "writer")
    first = generate(writer, count=2)
    receiver.wait_for(1)
    sandbox.configure(error_rate=1.0, error_kind="server_error")  # the next job fails: it is final too
    second = generate(owner)
    requests = receiver.wait_for(2)
    wait_delivered(2)
    runtime.wait_idle()
    assert len(receiver.requests) == 2   # one delivery per final job, no more

    verify = readme_verify()
    by_job = {event(r)["data"]["id"]: r for r in requests}
    assert set(by_job) == {first["id"], second["id"]}
    for job_id, request in by_job.items():
        assert verify(secret, request["headers"], request["body"])
        Webhook(secret).verify(request["body"], request["headers"])  # and with the standard's own library
        body = event(request)
        assert body["id"] == request["headers"]["webhook-id"] == services.job_event_id(job_id)
        assert body["type"] == "job.finished"
        # The job exactly as GET /api/v1/jobs/{id}/ shows it, final.
        assert body["data"] == client_for(owner).get(f"/api/v1/jobs/{job_id}/").json()
        assert body["data"]["status"] in ("succeeded", "failed")
    assert event(by_job[first["id"]])["data"]["status"] == "succeeded"
    assert len(event(by_job[first["id"]])["data"]["images"]) == 2
    assert event(by_job[second["id"]])["data"]["status"] == "failed"
    # A tampered body or another secret does not verify.
    request = by_job[first["id"]]
    assert not verify(secret, request["headers"], request["body"] + b" ")
    assert not verify("whsec_" + "A" * 44, request["headers"], request["body"])


def test_a_receiver_failing_three_times_gets_the_same_event_id_each_time(owner, receiver):
    secret = register(owner, receiver.url)["secret"]
    receiver.plan = [500, 503, 500]
    job = generate(owner)
    requests = receiver.wait_for(4)
    [delivery] = wait_delivered(1)
    assert {r["headers"]["webhook-id"] for r in requests} == {services.job_event_id(job["id"])}
    assert len({r["body"] for r in requests}) == 1          # the same bytes every time
    verify = readme_verify()
    assert all(verify(secret, r["headers"], r["body"]) for r in requests)
    assert delivery.attempts == 4
    log = client_for(owner).get(f"/api/v1/webhooks/deliveries/{delivery.pk}/").json()
    assert [(a["number"], a["status_code"], a["ok"]) for a in log["attempt_log"]] == [
        (1, 500, False), (2, 503, False), (3, 500, False), (4, 200, True)]
    assert log["status"] == "succeeded" and log["event_id"] == services.job_event_id(job["id"])
    assert log["attempt_log"][0]["error"] == "The endpoint answered 500."
    assert log["attempt_log"][0]["response_excerpt"] == "no: 500"


def test_retries_stop_after_the_retry_period(owner, receiver, settings):
    settings.CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS = 1
    register(owner, receiver.url)
    receiver.plan = [500] * 1000
    generate(owner)
    [delivery] = wait_delivered(1, status=DeliveryStatus.FAILED, timeout=30)
    assert delivery.attempts >= 3 and delivery.finished_at is not None
    # Given up once the 1 s period was over (generously bounded: without the period the 1,000
    # planned failures would be retried for far longer).
    assert delivery.finished_at <= delivery.created_at + dt.timedelta(seconds=20)
    assert len(receiver.requests) == delivery.attempts


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://[fd00::1]/", "http://0.0.0.0/",
    "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/",
])
def test_a_private_address_endpoint_is_refused_without_the_setting(owner, settings, url):
    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = []
    response = client_for(owner).post("/api/v1/webhooks/endpoints/", {"url": url}, format="json")
    assert response.status_code == 400, url
    assert response.json()["error"]["code"] == "invalid_request"
    assert "url" in response.json()["error"]["details"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["ftp://example.com/", "not a url", "http://user:pw@127.0.0.1/", "http:///x", ""])
def test_a_malformed_url_is_a_400(owner, url):
    response = client_for(owner).post("/api/v1/webhooks/endpoints/", {"url": url}, format="json")
    assert response.status_code == 400, url


def test_every_address_is_checked_again_when_it_is_sent(owner, receiver, settings):
    """Registered while the operator allowed loopback; allowed no more: the attempt is refused
    before any connection, the receiver hears nothing."""
    register(owner, receiver.url)
    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = []
    settings.CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS = 0
    generate(owner)
    [delivery] = wait_delivered(1, status=DeliveryStatus.FAILED)
    assert delivery.last_error.startswith("Refused: 127.0.0.1") and "loopback" in delivery.last_error
    assert receiver.requests == []


def test_redirects_are_never_followed(owner, receiver, settings):
    from .conftest import Receiver

    inside = Receiver()
    try:
        register(owner, receiver.url)
        receiver.plan = [302]
        receiver.redirect_to = inside.url
        settings.CREDITGATE_WEBHOOK_RETRY_PERIOD_SECONDS = 0
        generate(owner)
        [delivery] = wait_delivered(1, status=DeliveryStatus.FAILED)
        assert delivery.last_status_code == 302 and "redirects are not followed" in delivery.last_error
        assert inside.requests == []
    finally:
        inside.stop()


def test_a_request_names_an_endpoint_that_hears_only_of_its_jobs(owner, receiver):
    named = register(owner, receiver.url, all_jobs=False)
    generate(owner)                                              # names none: not for this endpoint
    named_job = generate(owner, headers={"Webhook-Endpoint": named["id"]})
    [request] = receiver.wait_for(1)
    runtime.wait_idle()
    wait_delivered(1)
    assert event(request)["data"]["id"] == named_job["id"]
    assert len(receiver.requests) == 1
    assert Job.objects.get(pk=named_job["id"]).webhook_endpoint_id is not None


def test_an_unknown_named_endpoint_is_a_400_and_holds_nothing(owner):
    from creditgate.credits.models import Hold

    for value in ("not-an-id", "6f1c3a52-9d1e-4d0b-8f5e-5b9a3c0e7a11"):
        response = client_for(owner).post("/api/v1/images/generations/", {"prompt": "x", "tier": "basic", "count": 1},
                                          format="json", headers={"Webhook-Endpoint": value})
        assert response.status_code == 400
        assert response.json()["error"]["details"] == {"Webhook-Endpoint": ["No such active endpoint in this account."]}
    assert not Hold.objects.exists() and not Job.objects.exists()


def test_the_outbox_keeps_an_event_whose_hand_off_failed_until_the_sweep_sends_it(owner, receiver, monkeypatch):
    register(owner, receiver.url)
    real_send = runtime.send
    monkeypatch.setattr(runtime, "send", lambda name, *args, **kw: False if name == services.DELIVER
                        else real_send(name, *args, **kw))
    generate(owner)
    runtime.wait_idle()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING and receiver.requests == []
    monkeypatch.setattr(runtime, "send", real_send)
    assert services.deliveries_sweep() == 1
    receiver.wait_for(1)
    wait_delivered(1)
    # Claimed before it is sent: handing it over twice sends it once.
    assert services.deliveries_sweep(now=timezone.now() + dt.timedelta(hours=1)) == 0
    runtime.wait_idle()
    assert len(receiver.requests) == 1


def test_the_test_button_sends_a_signed_test_event_and_everyone_in_the_account_sees_the_log(owner, receiver):
    endpoint = register(owner, receiver.url)
    writer = member_of(owner, "writer")
    assert client_for(writer).post(f"/api/v1/webhooks/endpoints/{endpoint['id']}/test/").status_code == 403
    response = client_for(owner).post(f"/api/v1/webhooks/endpoints/{endpoint['id']}/test/")
    assert response.status_code == 202 and response.json()["event_type"] == "webhook.test"
    [request] = receiver.wait_for(1)
    assert event(request)["type"] == "webhook.test"
    assert readme_verify()(endpoint["secret"], request["headers"], request["body"])
    wait_delivered(1)
    listed = client_for(writer).get("/api/v1/webhooks/deliveries/").json()
    assert listed["count"] == 1 and listed["results"][0]["status"] == "succeeded"
    endpoints = client_for(writer).get("/api/v1/webhooks/endpoints/").json()
    assert [e["id"] for e in endpoints] == [endpoint["id"]] and "secret" not in endpoints[0]


def test_another_account_sees_nothing_and_members_cannot_register(owner, receiver):
    from creditgate.credits.tests.conftest import make_user

    endpoint = register(owner, receiver.url)
    client_for(owner).post(f"/api/v1/webhooks/endpoints/{endpoint['id']}/test/")
    receiver.wait_for(1)
    stranger = client_for(make_user("stranger"))
    assert stranger.get("/api/v1/webhooks/deliveries/").json()["count"] == 0
    assert stranger.get(f"/api/v1/webhooks/endpoints/{endpoint['id']}/").status_code == 404
    assert stranger.post(f"/api/v1/webhooks/endpoints/{endpoint['id']}/test/").status_code == 404
    writer = member_of(owner, "writer")
    response = client_for(writer).post("/api/v1/webhooks/endpoints/", {"url": receiver.url}, format="json")
    assert response.status_code == 403


def test_the_secret_is_encrypted_at_rest_and_shown_once(owner, receiver):
    created = register(owner, receiver.url)
    row = WebhookEndpoint.objects.get()
    assert created["secret"] not in row.secret_encrypted
    assert services.endpoint_secret(row) == created["secret"]
    assert "secret" not in client_for(owner).get(f"/api/v1/webhooks/endpoints/{created['id']}/").json()


def test_the_outbox_statement_names_the_models_tables():
    from creditgate.webhooks.models import WebhookDelivery, WebhookEndpoint

    assert f"INSERT INTO {WebhookDelivery._meta.db_table} " in services._JOB_EVENTS_SQL
    assert f" FROM {WebhookEndpoint._meta.db_table} " in services._JOB_EVENTS_SQL
