"""The reverse proxy in front of docker replicas: HAProxy, in an image made from Debian
packages like the base image (no registry needed), configured by a file modelyard writes.

HAProxy runs in master-worker mode: ``SIGUSR2`` re-reads the configuration and starts a new
worker on the listening sockets the master keeps, while the old worker finishes its open
connections — so switching backends drops nothing. Failed connections to a replica are retried
on another one (``retry-on``), and replicas are health-checked on ``/v2/health/ready``.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard import image_contract as contract
from modelyard.images import validate as v

DEFAULT_PROXY_IMAGE = "modelyard/proxy:haproxy-bookworm"
PROXY_PACKAGES = ("haproxy",)
CONFIG_DIR = "/etc/haproxy"  # made by the Debian package
CONFIG_PATH = f"{CONFIG_DIR}/modelyard.cfg"
LISTEN_PORT = 8080


#: HAProxy's largest server weight; a canary's share is spread over this many units.
WEIGHT_UNITS = 256
VARIANT_HEADER = "x-modelyard-variant"  # only modelyard's mirrors may set it: clients' is dropped


def render_haproxy_config(
    backends: Sequence[str],
    *,
    backend_port: int = contract.PORT,
    candidates: Sequence[str] = (),
    candidate_percent: float = 0.0,
    sticky: str | None = None,
) -> str:
    """``backends`` are container names on the deployment's network; ``candidates`` (a canary)
    get ``candidate_percent`` of the requests through the servers' weights, the backends the
    rest (precision: 1/256 of the traffic). ``sticky``: a request header hashed (consistently,
    weights respected) to pick the server, so one client stays on one variant; requests
    without it are balanced round robin."""
    port = int(backend_port)
    share = min(max(candidate_percent, 0.0), 100.0) / 100.0 if candidates else 0.0
    weights = {}
    if candidates:
        weights = {
            "r": _split_weight(1.0 - share, len(backends)),
            "c": _split_weight(share, len(candidates)),
        }
    servers = [
        f"  server r{i} {v.check_image_ref('replica', name)}:{port} "
        "check inter 1s fall 2 rise 1" + (f" weight {weights['r']}" if weights else "")
        for i, name in enumerate(backends, 1)
    ]
    servers += [
        f"  server c{i} {v.check_image_ref('candidate', name)}:{port} "
        f"check inter 1s fall 2 rise 1 weight {weights['c']}"
        for i, name in enumerate(candidates, 1)
    ]
    balance = ["  balance roundrobin"]
    if sticky is not None:
        if not all(ch.isalnum() or ch == "-" for ch in sticky) or not sticky:
            raise ValueError(f"{sticky!r} is not a header name")
        balance = [f"  balance hdr({sticky})", "  hash-type consistent"]
    return "\n".join(
        [
            "# Written by modelyard deploy; replaced and reloaded (SIGUSR2) on each rollout.",
            "global",
            "  master-worker",
            "  hard-stop-after 60s",
            "defaults",
            "  mode http",
            "  timeout connect 2s",
            "  timeout client 60s",
            "  timeout server 60s",
            "  timeout http-keep-alive 2s",
            "  retries 3",
            "  option redispatch 1",
            "  retry-on all-retryable-errors",
            "  default-server init-addr last,libc,none",
            "frontend serve",
            f"  bind :{LISTEN_PORT}",
            f"  http-request del-header {VARIANT_HEADER}",
            "  default_backend replicas",
            "backend replicas",
            *balance,
            f"  option httpchk GET {contract.READY_PATH}",
            "  http-check expect status 200",
            *servers,
            "",
        ]
    )


def _split_weight(share: float, servers: int) -> int:
    """Each of ``servers`` servers' weight for a group with ``share`` of the traffic."""
    return round(share * WEIGHT_UNITS / max(servers, 1)) if share > 0 else 0


def proxy_command() -> list[str]:
    return ["haproxy", "-W", "-db", "-f", CONFIG_PATH]
