"""Values of the deploy stage that leave the store: deployments, their revisions (one per
rollout) and events, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Deployment statuses: what the service as a whole is doing now.
DEPLOYING = "deploying"


RUNNING = "running"


FAILED = "failed"  # the last rollout failed; the previous revision (if any) still serves


STOPPED = "stopped"


# Revision statuses.
REV_PENDING = "pending"


REV_ACTIVE = "active"


REV_FAILED = "failed"


REV_SUPERSEDED = "superseded"


@dataclass(frozen=True)
class DeploymentRevision:
    revision: int
    model_name: str
    model_version: int
    image_ref: str | None
    image_digest: str | None
    replicas: int
    status: str
    detail: str | None
    created_at: datetime

    @property
    def model_ref(self) -> str:
        return f"{self.model_name}@{self.model_version}"


@dataclass(frozen=True)
class DeploymentEvent:
    at: datetime
    kind: str
    message: str


@dataclass(frozen=True)
class Deployment:
    id: int
    name: str
    target: str
    status: str
    revision: int | None
    port: int | None
    replicas: int
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    revisions: tuple[DeploymentRevision, ...] = field(default_factory=tuple)

    @property
    def current(self) -> DeploymentRevision | None:
        """The revision serving now (None before the first successful rollout)."""
        return next((r for r in self.revisions if r.revision == self.revision), None)
