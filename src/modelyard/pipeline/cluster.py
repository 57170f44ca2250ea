"""What the pods of a compiled pipeline (Argo Workflows, Kubeflow Pipelines) share, and where.

Each platform reads its own table of the workspace config, ``[pipeline.argo]`` or
``[pipeline.kubeflow]``, with the same keys: ``image`` (the default step image), ``workdir``
(where the image holds the project, default ``/workspace``), ``store_secret`` (a Secret whose key
``url`` is the team's store URL), ``artifacts_claim`` (a PersistentVolumeClaim mounted at
``/artifacts``) or ``artifacts_url`` (``s3://bucket/prefix``), ``service_account``.

Without a shared store and a shared artifact location every pod would record into its own empty
SQLite file and folder, so :meth:`ClusterSettings.require_shared_state` refuses and names the
settings to add, unless the caller says a one-node trial is meant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

ARTIFACTS_MOUNT = "/artifacts"
DEFAULT_WORKDIR = "/workspace"
_KEYS = ("image", "workdir", "store_secret", "artifacts_claim", "artifacts_url", "service_account")


@dataclass(frozen=True)
class ClusterSettings:
    """One platform's table, checked: every value is a string or absent."""

    table: str  # "argo" or "kubeflow": the [pipeline.TABLE] it came from
    image: str | None = None
    workdir: str = DEFAULT_WORKDIR
    store_secret: str | None = None
    artifacts_claim: str | None = None
    artifacts_url: str | None = None
    service_account: str | None = None

    @classmethod
    def of(cls, workspace: Workspace, table: str) -> ClusterSettings:
        section = workspace.settings.section("pipeline").get(table, {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"[pipeline.{table}] in the workspace config must be a table")
        values: dict[str, Any] = {}
        for key in _KEYS:
            value = section.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"[pipeline.{table}] {key} must be a non-empty string")
            values[key] = value.strip()
        return cls(table=table, **values)

    def require_shared_state(self) -> None:
        """Refuse, naming the settings to add, when the pods would not share state."""
        missing = []
        if not self.store_secret:
            missing.append(
                'store_secret = "modelyard-store"      # a Secret whose key "url" is the team\'s '
                "PostgreSQL URL"
            )
        if not self.artifacts_claim and not self.artifacts_url:
            missing.append(
                'artifacts_claim = "modelyard-artifacts"  # a ReadWriteMany PersistentVolumeClaim, '
                'or artifacts_url = "s3://bucket/prefix"'
            )
        if missing:
            lines = "\n".join(f"  {line}" for line in missing)
            pods = "every pod of the workflow" if self.table == "argo" else "every step's pod"
            raise ConfigError(
                f"{pods} would get its own empty store and artifact folder; "
                f"add to modelyard.toml:\n  [pipeline.{self.table}]\n{lines}\n"
                "(or compile with --allow-local-state for a one-node trial)"
            )

    def pipeline_file(self, path: Path, workspace: Workspace) -> str:
        """Where the pipeline file is inside the step image: under ``workdir`` at the same
        place relative to the workspace as here."""
        try:
            rel = path.resolve().relative_to(workspace.root)
        except ValueError:
            raise ConfigError(f"{path} is outside the workspace {workspace.root}") from None
        return f"{self.workdir.rstrip('/')}/{rel.as_posix()}"

    def environment(self) -> dict[str, str]:
        """Plain environment variables every pod gets (the store URL comes from the Secret)."""
        env = {"MODELYARD_WORKSPACE": self.workdir}
        if self.artifacts_claim:
            env["MODELYARD_ARTIFACT_ROOT"] = ARTIFACTS_MOUNT
        elif self.artifacts_url:
            env["MODELYARD_ARTIFACTS_URL"] = self.artifacts_url
        return env
