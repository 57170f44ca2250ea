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


def render_haproxy_config(backends: Sequence[str], *, backend_port: int = contract.PORT) -> str:
    """``backends`` are container names on the deployment's network."""
    servers = [
        f"  server r{i} {v.check_image_ref('replica', name)}:{int(backend_port)} "
        "check inter 1s fall 2 rise 1"
        for i, name in enumerate(backends, 1)
    ]
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
            "  default_backend replicas",
            "backend replicas",
            "  balance roundrobin",
            f"  option httpchk GET {contract.READY_PATH}",
            "  http-check expect status 200",
            *servers,
            "",
        ]
    )


def proxy_command() -> list[str]:
    return ["haproxy", "-W", "-db", "-f", CONFIG_PATH]
