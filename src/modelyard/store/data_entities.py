"""Values of the data stage that leave the store: frozen dataclasses, never rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str
    description: str | None
    created_at: datetime
    latest_version: int | None = None


@dataclass(frozen=True)
class DatasetVersion:
    id: int
    name: str
    version: int
    digest: str
    kind: str  # "file" | "directory"
    format: str  # "csv" | "parquet" | "binary" | "directory"
    size: int
    file_count: int
    schema: dict[str, Any] | None
    profile: dict[str, Any] | None
    source: str | None
    description: str | None
    created_at: datetime
    created_by: str | None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
