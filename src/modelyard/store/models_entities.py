"""Values of the models stage (the registry) that leave the store: frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MODEL_ACTIVE = "active"
MODEL_ARCHIVED = "archived"
MODEL_STATUSES = (MODEL_ACTIVE, MODEL_ARCHIVED)


@dataclass(frozen=True)
class RegisteredModel:
    id: int
    name: str
    description: str | None
    gate: dict[str, Any] | None
    created_at: datetime
    created_by: str | None
    latest_version: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> version number


@dataclass(frozen=True)
class ModelVersion:
    id: int
    name: str
    version: int
    digest: str  # manifest digest of the model folder in the artifact store
    flavor: str
    signature: dict[str, Any] | None
    requirements: dict[str, str] | None
    run_id: str | None
    source: str | None
    description: str | None
    status: str
    trusted_pickle: bool
    trusted_by: str | None
    created_at: datetime
    created_by: str | None
    image_id: str | None = None
    image_digest: str | None = None
    image_size: int | None = None
    image_ref: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    trusted_digest: str | None = None  # the content an admin trusted to run code on load
    trusted_at: datetime | None = None

    @property
    def code_trusted(self) -> bool:
        """An admin trusted this version's code (pickle or Python source) *and* the trust was
        given to the content the version holds now."""
        return self.trusted_pickle and self.trusted_digest == self.digest

    @property
    def ref(self) -> str:
        """``name@version``: the lineage node id and the canonical way to name this version."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class AliasMove:
    """One line of an alias's history. ``to_version`` None means the alias was removed."""

    id: int
    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str | None
    moved_at: datetime
    reason: str | None
    forced: bool
    failed_checks: list[str] | None


@dataclass(frozen=True)
class Approval:
    id: int
    name: str
    version: int
    actor: str | None
    approved_at: datetime
    comment: str | None
