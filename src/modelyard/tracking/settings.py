"""Tracking settings: how often a live run proves it is alive, and when it counts as lost.

Read from the ``[tracking]`` table of the workspace config, overridden by environment
variables, when a run starts or a command lists runs; never at import.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

DEFAULT_HEARTBEAT_INTERVAL_S = 10.0
DEFAULT_FLUSH_EVERY = 1000
DEFAULT_FLUSH_INTERVAL_S = 0.5
STALE_AFTER_INTERVALS = 3
HEARTBEAT_ENV = "MODELYARD_HEARTBEAT_INTERVAL"


@dataclass(frozen=True)
class TrackingSettings:
    heartbeat_interval_s: float = DEFAULT_HEARTBEAT_INTERVAL_S
    flush_every: int = DEFAULT_FLUSH_EVERY
    flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S

    @property
    def stale_after_s(self) -> float:
        """A run whose last heartbeat is older than this is ``lost``: three missed beats, so a
        busy machine delaying one beat does not flag a healthy run."""
        return self.heartbeat_interval_s * STALE_AFTER_INTERVALS

    @classmethod
    def of(cls, ws: Workspace, environ: Mapping[str, str] | None = None) -> TrackingSettings:
        env = os.environ if environ is None else environ
        section = ws.settings.section("tracking")
        interval = _positive(
            env.get(HEARTBEAT_ENV)
            or section.get("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL_S),
            HEARTBEAT_ENV if env.get(HEARTBEAT_ENV) else "[tracking] heartbeat_interval",
        )
        flush_every = section.get("flush_every", DEFAULT_FLUSH_EVERY)
        if not isinstance(flush_every, int) or isinstance(flush_every, bool) or flush_every < 1:
            raise ConfigError("[tracking] flush_every must be a positive integer")
        flush_interval = _positive(
            section.get("flush_interval", DEFAULT_FLUSH_INTERVAL_S), "[tracking] flush_interval"
        )
        return cls(
            heartbeat_interval_s=interval,
            flush_every=flush_every,
            flush_interval_s=flush_interval,
        )


def _positive(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{where} must be a positive number of seconds, not {value!r}")
    return number
