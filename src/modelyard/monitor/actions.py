"""What a fired policy does: alert (a log line and a webhook POST) or retrain.

A webhook URL comes from config, but the monitor runs next to databases and cloud metadata
services, so a URL that resolves to a private, loopback or link-local address is refused unless
the workspace allows it (``allow_private_webhooks = true``, or the host / a network containing
it listed in ``webhook_allow``). Every address the host resolves to is checked, and the request
is then sent to the checked address itself, so a DNS answer that changes between the check and
the request cannot redirect it.
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
from typing import Any
from urllib.parse import urlsplit

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
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = list(resolver(host, port))
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


def post_json(target: WebhookTarget, body: Mapping[str, Any], *, timeout: float = 10.0) -> int:
    """POST ``body`` as JSON to the vetted address; the HTTP status (raises OSError on network
    failure). TLS still verifies the certificate against the host name."""
    payload = json.dumps(body, default=str).encode()
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
        return response.status
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
        target = check_webhook_url(
            webhook, allow_private=allow_private, allow=allow, resolver=resolver
        )
        status = post_json(target, body, timeout=timeout)
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
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return bool(address.is_global) and not address.is_multicast


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
