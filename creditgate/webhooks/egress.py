"""Outbound HTTP to the URLs accounts register: never to a private, loopback, link-local or other
non-public address (unless CREDITGATE_WEBHOOK_ALLOWED_NETWORKS lists its network), never through a
redirect, and with every address checked when the connection is made, not only at registration.

Hand-written rather than taken from a library: the one established SSRF guard for `requests`,
advocate, has had no release since 2020. What we need is small: resolve the host, refuse if ANY of
its addresses is not allowed, and connect only to an address that was checked, in the same step,
so a DNS answer that changes between a check and the connection (DNS rebinding) cannot reach an
internal service. Redirects are not followed at all (a 3xx answer is a failed attempt), no proxy
from the environment is used (it would make the connection for us), and no credentials may sit in
the URL.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from creditgate.core.errors import InvalidRequest

SCHEMES = ("http", "https")


class AddressRefused(Exception):
    """The URL's host is, or resolves to, an address we do not send to."""


# IPv6 forms that carry an IPv4 address, which the IPv6 address's own flags do not judge (Python
# calls 2002:7f00:1:: global, yet a 6to4 relay delivers it to 127.0.0.1). Each one is judged by the
# IPv4 address inside it too. NAT64's local-use prefix may put the IPv4 address anywhere from bit 48
# (RFC 6052's /48../96 layouts), so that prefix is refused whole.
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
ISATAP_IDS = (0x0000_5EFE, 0x0200_5EFE)  # the interface id's upper half: ::0:5efe:a.b.c.d, ::200:5efe:a.b.c.d


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address wraps, each with the name of its form: IPv4-mapped,
    IPv4-compatible, 6to4 (bits 16-48), Teredo (its server, and its client: the inverted last 32
    bits), NAT64 (the last 32 bits), ISATAP (an interface id of 0:5efe or 200:5efe and an IPv4)."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    if ip.ipv4_mapped is not None:
        found.append(("IPv4-mapped", ip.ipv4_mapped))
    elif ip in IPV4_COMPATIBLE and int(ip) > 1:  # not :: or ::1, which are judged as themselves
        found.append(("IPv4-compatible", low32))
    if ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [("Teredo server", server), ("Teredo client", client)]
    if ip in NAT64_WELL_KNOWN:
        found.append(("NAT64", low32))
    if (int(ip) >> 32) & 0xFFFF_FFFF in ISATAP_IDS:
        found.append(("ISATAP", low32))
    return found


def address_refusal(address: str) -> str | None:
    """Why we do not send to `address` (an IP literal), or None if we may. An IPv6 address that
    wraps an IPv4 one (embedded_ipv4) is refused if the IPv4 address would be."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone ("fe80::1%eth0") is link-local anyway
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return _refusal(ip.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1 on the wire
    if ip.version == 6 and not _allowed(ip):
        if ip in NAT64_LOCAL_USE:
            return f"{ip} is a local-use NAT64 address"
        for form, inner in embedded_ipv4(ip):
            reason = _refusal(inner)
            if reason:
                return f"{ip} wraps {inner} ({form}): {reason}"
    return _refusal(ip)


def _allowed(ip) -> bool:
    return any(ip in network for network in allowed_networks())


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if _allowed(ip):
        return None
    for kind, flag in (("a loopback", ip.is_loopback), ("a private", ip.is_private), ("a link-local", ip.is_link_local),
                       ("a multicast", ip.is_multicast), ("an unspecified", ip.is_unspecified),
                       ("a reserved", ip.is_reserved)):
        if flag:
            return f"{ip} is {kind} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def allowed_networks() -> list:
    return [ipaddress.ip_network(n, strict=False) for n in settings.CREDITGATE_WEBHOOK_ALLOWED_NETWORKS]


def resolve(host: str, port: int) -> list[tuple]:
    """Every address `host` resolves to, each checked: getaddrinfo's entries. AddressRefused if
    any address is not allowed (one bad answer refuses the host: a resolver may rotate answers)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # gaierror is an OSError; an embedded NUL a ValueError
        raise AddressRefused(f"{host} could not be resolved") from exc
    for info in infos:
        reason = address_refusal(str(info[4][0]))  # the address: always a str for AF_INET(6)
        if reason:
            raise AddressRefused(f"{host}: {reason}; webhooks are sent only to public addresses")
    if not infos:
        raise AddressRefused(f"{host} could not be resolved")
    return infos


def url_clean(url) -> str:
    """A webhook URL fit to register: http(s), a host, no credentials, and a host whose every
    address we may send to. InvalidRequest (400) otherwise."""
    if not isinstance(url, str) or not url.strip() or len(url.strip()) > 2000:
        raise InvalidRequest("The URL must be 1 to 2000 characters.",
                             details={"url": ["Must be 1 to 2000 characters."]})
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidRequest("That is not a valid URL.", details={"url": ["Enter a valid http(s) URL."]}) from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise InvalidRequest("The URL must start with https:// (or http://) and name a host.",
                             details={"url": ["Enter a valid http(s) URL."]})
    if parts.username or parts.password:
        raise InvalidRequest("Put no credentials in the URL; receivers verify the signature instead.",
                             details={"url": ["Must not contain a user name or password."]})
    try:
        resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    except AddressRefused as exc:
        raise InvalidRequest(f"This URL cannot receive webhooks: {exc}.", details={"url": [f"{exc}."]}) from None
    return url


# --- The connection: resolve, check, connect to a checked address ---------------------------


class _GuardedConnectionMixin(HTTPConnection):
    """Mixed in before HTTPConnection or HTTPSConnection (subclassing HTTPConnection only types it)."""

    def _new_conn(self) -> socket.socket:
        # urllib3's own _new_conn resolves and connects in one call (create_connection); this one
        # resolves, checks every address, then connects to the checked addresses themselves. TLS
        # still verifies the certificate against the host name (HTTPSConnection wraps this socket).
        try:
            infos = resolve(self._dns_host, self.port)
        except AddressRefused as exc:
            if isinstance(exc.__cause__, socket.gaierror):
                raise NameResolutionError(self.host, self, exc.__cause__) from exc
            raise NewConnectionError(self, f"Refused: {exc}") from exc
        error: Exception | None = None
        for family, socktype, proto, _, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                for option in self.socket_options or []:
                    sock.setsockopt(*option)
                if self.timeout is not None:
                    sock.settimeout(self.timeout)
                sock.connect(sockaddr)
                return sock
            except TimeoutError as exc:
                sock.close()
                error = ConnectTimeoutError(self, f"Connection to {self.host} timed out.")
                error.__cause__ = exc
            except OSError as exc:
                sock.close()
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
                error.__cause__ = exc
        assert error is not None  # resolve() returns at least one address, or raises
        raise error


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def session() -> requests.Session:
    """A requests session that connects only to allowed addresses. Send with allow_redirects=False."""
    s = requests.Session()
    s.trust_env = False  # no proxy from the environment: it would connect on our behalf, unchecked
    for scheme in SCHEMES:
        s.mount(f"{scheme}://", _GuardedAdapter(max_retries=0))
    return s


def refusal_reason(exc: BaseException | None) -> str | None:
    """The refusal inside a requests error raised by a guarded connection, if that is what it was."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, AddressRefused):
            return str(exc)
        nested = getattr(exc, "reason", None)
        exc = exc.__cause__ or exc.__context__ or (nested if isinstance(nested, BaseException) else None) or (
            exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None)
    return None
