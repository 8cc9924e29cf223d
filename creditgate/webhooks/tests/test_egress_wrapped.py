"""Issue 22, item 3: the egress guard judges the IPv4 address inside an IPv6 wrapper (IPv4-mapped,
IPv4-compatible, 6to4, Teredo, NAT64, ISATAP), whether the URL names it or DNS answers with it."""

from __future__ import annotations

import socket

import pytest
import requests

from creditgate.webhooks import egress
from creditgate.webhooks.models import WebhookEndpoint

from .conftest import client_for

# (address, the form, the IPv4 address inside): each wraps an internal address.
WRAPPED = [
    ("::ffff:127.0.0.1", "IPv4-mapped", "127.0.0.1"),
    ("::ffff:a9fe:a9fe", "IPv4-mapped", "169.254.169.254"),
    ("::7f00:1", "IPv4-compatible", "127.0.0.1"),
    ("::a00:1", "IPv4-compatible", "10.0.0.1"),
    ("2002:7f00:1::", "6to4", "127.0.0.1"),             # the reproduction
    ("2002:a9fe:a9fe::1", "6to4", "169.254.169.254"),
    ("2002:c0a8:101:1::", "6to4", "192.168.1.1"),
    # Teredo: server 65.54.227.120, client = the last 32 bits inverted (80ff:fffe -> 7f00:0001).
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo client", "127.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo client", "10.0.0.1"),
    ("2001:0:a00:1:8000:63bf:f7f7:f7f7", "Teredo server", "10.0.0.1"),
    ("64:ff9b::7f00:1", "NAT64", "127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64", "169.254.169.254"),
    ("2a00:1450::5efe:7f00:1", "ISATAP", "127.0.0.1"),    # global prefix, ISATAP interface id
    ("2a00:1450::200:5efe:a00:1", "ISATAP", "10.0.0.1"),
    ("2606:4700:1::5efe:c0a8:101", "ISATAP", "192.168.1.1"),
]
LOCAL_NAT64 = ["64:ff9b:1::7f00:1", "64:ff9b:1:7f00:1::", "64:ff9b:1:ffff::808:808"]
# 6to4 and ISATAP around public addresses, and plain public ones: still allowed. (Teredo, 2001::/32,
# is refused whole as IANA's special-purpose 2001::/23 anyway; its inner address names the reason.)
PUBLIC = ["2002:808:808::1", "2a00:1450::5efe:808:808", "2606:4700:4700::1111", "8.8.8.8"]


@pytest.fixture
def public_only(settings):
    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = []


@pytest.mark.parametrize(("address", "form", "inner"), WRAPPED, ids=[w[0] for w in WRAPPED])
def test_a_wrapped_internal_address_is_refused_naming_what_it_wraps(public_only, address, form, inner):
    reason = egress.address_refusal(address)
    assert reason is not None
    assert inner in reason
    if form != "IPv4-mapped":  # judged as the IPv4 address itself, which it is on the wire
        assert f"wraps {inner} ({form})" in reason


@pytest.mark.parametrize("address", LOCAL_NAT64)
def test_the_local_use_nat64_prefix_is_refused_whole(public_only, address):
    assert egress.address_refusal(address) == f"{address} is a local-use NAT64 address"


@pytest.mark.parametrize("address", PUBLIC)
def test_wrappers_of_public_addresses_and_public_addresses_pass(public_only, address):
    assert egress.address_refusal(address) is None


def test_an_operators_allowed_network_covers_its_wrapped_forms(settings):
    settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert egress.address_refusal("2002:a00:1::") is None
    assert egress.address_refusal("2002:7f00:1::") is not None


@pytest.mark.parametrize("address", [w[0] for w in WRAPPED] + LOCAL_NAT64)
def test_registering_a_wrapped_internal_address_is_a_400(owner, public_only, address):
    response = client_for(owner).post("/api/v1/webhooks/endpoints/", {"url": f"http://[{address}]:22999/"},
                                      format="json")
    assert response.status_code == 400, (address, response.content)
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "url" in error["details"]
    assert not WebhookEndpoint.objects.exists()


@pytest.fixture
def dns_answers(monkeypatch):
    """hooks.example.com resolves to whatever the test says (a resolver answering an AAAA record)."""
    answers: dict[str, str] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (answers[host], port or 0, 0, 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(egress.socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.mark.parametrize(("address", "form", "inner"), [w for w in WRAPPED if w[1] in ("6to4", "Teredo client",
                                                                                       "NAT64", "ISATAP")][::2])
def test_a_wrapped_internal_address_from_dns_is_refused_at_registration_and_at_sending(
        owner, public_only, dns_answers, address, form, inner):
    dns_answers["hooks.example.com"] = address
    response = client_for(owner).post("/api/v1/webhooks/endpoints/", {"url": "https://hooks.example.com/in"},
                                      format="json")
    assert response.status_code == 400, response.content
    assert inner in response.json()["error"]["details"]["url"][0]
    assert not WebhookEndpoint.objects.exists()

    # At sending (the answer changed since registration: DNS rebinding): refused before connecting.
    with pytest.raises(requests.ConnectionError) as refused:
        egress.session().post("https://hooks.example.com/in", data=b"{}", timeout=5, allow_redirects=False)
    reason = egress.refusal_reason(refused.value)
    assert reason is not None and f"wraps {inner} ({form})" in reason
