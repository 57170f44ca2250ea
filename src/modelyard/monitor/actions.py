"""What a fired policy does: alert (a log line and a webhook POST) or retrain.

A webhook URL comes from config, but the monitor runs next to databases and cloud metadata
services, so a URL that resolves to a private, loopback or link-local address is refused unless
the workspace allows it (``allow_private_webhooks = true``, or the host / a network containing
it listed in ``webhook_allow``). Every address the host resolves to is checked, and the request
is then sent to the checked address itself, so a DNS answer that changes between the check and
the request cannot redirect it.

"Private" covers every spelling: IPv4 literals in decimal, octal or hex (``2130706433``,
``0x7f.1``, ``0177.0.0.1``, read as the C library reads them), and IPv6 addresses that embed an
IPv4 one (mapped ``::ffff:127.0.0.1``, compatible ``::7f00:1``, translated, 6to4 ``2002::/16``,
NAT64 ``64:ff9b::/96``, Teredo) are judged by the address they embed; CGNAT ``100.64/10``,
unique-local ``fc00::/7`` and the cloud metadata addresses (``169.254.169.254``,
``fd00:ec2::254``) are not public. A redirect is followed only when it keeps the POST (307/308),
at most three times, and each new location is checked like the first.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

from modelyard.errors import ConfigError

logger = logging.getLogger("modelyard.monitor")

Resolver = Callable[[str, int], Sequence[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class WebhookTarget:
    """A vetted webhook: where to connect (an address that passed the checks) and what to ask."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    address: str


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def check_webhook_url(
    url: str,
    *,
    allow_private: bool = False,
    allow: Sequence[str] = (),
    resolver: Resolver = resolve_host,
) -> WebhookTarget:
    """Refuse ``url`` unless it is http(s) and every address of its host is public or allowed.

    ``allow`` holds host names and addresses or networks (``10.0.0.0/8``) that may be private.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(
            f"webhook {_redact(url)!r} must be an http:// or https:// URL with a host"
        )
    if parts.username or parts.password:
        raise ConfigError(f"webhook {_redact(url)!r} must not carry credentials in the URL")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"webhook {_redact(url)!r} has an invalid port") from None
    literal = _ipv4_literal(host)
    try:
        addresses = [literal] if literal is not None else list(resolver(host, port))
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"webhook host {host!r} does not resolve: {exc}") from None
    if not addresses:
        raise ConfigError(f"webhook host {host!r} does not resolve")
    host_allowed = allow_private or host.lower() in {a.lower() for a in allow}
    networks = _networks(allow)
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if host_allowed or _is_public(address) or any(address in n for n in networks):
            continue
        raise ConfigError(
            f"webhook {host!r} resolves to {_kind(address)} address {address}; refused "
            "(set allow_private_webhooks = true or list it in webhook_allow under [monitor])"
        )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookTarget(url, parts.scheme, host, port, path, addresses[0])


def _ipv4_literal(host: str) -> str | None:
    """A host written as an IPv4 address in any form the C library accepts (``2130706433``,
    ``0x7f.1``, ``0177.0.0.1``), as a dotted quad; None for anything else."""
    if not host or not all(ch in "0123456789abcdefxABCDEFX." for ch in host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


MAX_REDIRECTS: Final = 3


def post_json(
    target: WebhookTarget,
    body: Mapping[str, Any],
    *,
    timeout: float = 10.0,
    recheck: Callable[[str], WebhookTarget] | None = None,
) -> int:
    """POST ``body`` as JSON to the vetted address; the HTTP status (raises OSError on network
    failure). TLS still verifies the certificate against the host name. A 307/308 redirect is
    followed (at most :data:`MAX_REDIRECTS`) only through ``recheck``, which vets the new
    location as the first one was; without it, the redirect status is returned."""
    payload = json.dumps(body, default=str).encode()
    for _ in range(MAX_REDIRECTS + 1):
        status, location = _post_once(target, payload, timeout)
        if status not in (307, 308) or location is None or recheck is None:
            return status
        target = recheck(urljoin(target.url, location))
    raise OSError(f"more than {MAX_REDIRECTS} redirects")


def _post_once(target: WebhookTarget, payload: bytes, timeout: float) -> tuple[int, str | None]:
    headers = {
        "Host": target.host if target.port in (80, 443) else f"{target.host}:{target.port}",
        "Content-Type": "application/json",
        "User-Agent": "modelyard-monitor",
    }
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = _PinnedHTTPS(target, timeout)
    else:
        conn = http.client.HTTPConnection(target.address, target.port, timeout=timeout)
    try:
        conn.request("POST", target.path, body=payload, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("location")
    finally:
        conn.close()


@dataclass(frozen=True)
class AlertResult:
    sent: bool
    status: int | None
    error: str | None


def send_alert(
    body: Mapping[str, Any],
    webhook: str | None,
    *,
    allow_private: bool = False,
    allow: Sequence[str] = (),
    resolver: Resolver = resolve_host,
    timeout: float = 10.0,
) -> AlertResult:
    """Log the alert, then POST it to ``webhook`` if one is set. A refused or failing webhook
    is reported in the result (and logged), never raised: one bad hook must not stop the loop."""
    logger.warning("modelyard alert: %s", json.dumps(body, default=str, sort_keys=True))
    if webhook is None:
        return AlertResult(False, None, None)
    try:

        def vet(url: str) -> WebhookTarget:
            return check_webhook_url(
                url, allow_private=allow_private, allow=allow, resolver=resolver
            )

        status = post_json(vet(webhook), body, timeout=timeout, recheck=vet)
    except ConfigError as exc:
        logger.error("alert webhook refused: %s", exc.message)
        return AlertResult(False, None, exc.message)
    except OSError as exc:
        logger.error("alert webhook %s failed: %s", _redact(webhook), exc)
        return AlertResult(False, None, f"webhook failed: {exc}")
    if status >= 300:
        return AlertResult(False, status, f"webhook answered HTTP {status}")
    return AlertResult(True, status, None)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed address, with SNI and certificate checks for the original host."""

    def __init__(self, target: WebhookTarget, timeout: float) -> None:
        super().__init__(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
        self._address = target.address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def _is_public(address: IPAddress) -> bool:
    """Global unicast, and so is every IPv4 address it embeds: an IPv6 form of 127.0.0.1 or
    169.254.169.254 (mapped, compatible, translated, 6to4, NAT64) is what it embeds."""
    if not address.is_global or address.is_multicast:
        return False
    return all(_is_public(inner) for inner in embedded_ipv4(address))


_NAT64: Final = (
    ipaddress.ip_network("64:ff9b::/96"),  # the well-known prefix (RFC 6052)
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
)
_IPV4_COMPATIBLE: Final = ipaddress.ip_network("::/96")  # deprecated, still routed by some stacks
_IPV4_TRANSLATED: Final = ipaddress.ip_network("::ffff:0:0:0/96")  # SIIT (RFC 2765)
_SIX_TO_FOUR: Final = ipaddress.ip_network("2002::/16")


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (none for an IPv4 address)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    value = int(address)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in _IPV4_COMPATIBLE or address in _IPV4_TRANSLATED:
        found.append(low32)
    if any(address in net for net in _NAT64):
        found.append(low32)
    if address in _SIX_TO_FOUR:
        found.append(ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF))
    if address.teredo is not None:
        found.extend(address.teredo)
    return found


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "a loopback"
    if address.is_link_local:
        return "a link-local"
    if address.is_private:
        return "a private"
    return "a non-public"


def _networks(allow: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for entry in allow:
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # a host name, matched by name
    return out


def _redact(url: str) -> str:
    """Scheme and host only: Slack, Teams and Discord hooks carry their secret in the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…"


__all__ = [
    "AlertResult",
    "WebhookTarget",
    "check_webhook_url",
    "post_json",
    "resolve_host",
    "send_alert",
]
