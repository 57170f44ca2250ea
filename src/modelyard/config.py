"""Workspace configuration: ``modelyard.toml`` (or ``[tool.modelyard]`` in pyproject.toml),
overridden by ``MODELYARD_*`` environment variables.

Read when a :class:`Settings` is built, never at import; the environment is injectable so tests
and embedding applications never have to mutate ``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import ConfigError

CONFIG_FILE = "modelyard.toml"
STATE_DIR = ".modelyard"

# environment variable -> settings key
ENV_KEYS = {
    "MODELYARD_STORE_URL": "store_url",
    "MODELYARD_ARTIFACT_ROOT": "artifact_root",
    "MODELYARD_ARTIFACTS_URL": "artifacts_url",  # s3://bucket/prefix: artifacts in a bucket
    "MODELYARD_URL": "server_url",  # a team server: store and artifacts live there
    "MODELYARD_TOKEN": "server_token",
}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one workspace. ``sections`` keeps every other table of the config
    file (``[serve]``, ``[monitor]``…) for the stage that owns it."""

    root: Path
    store_url: str
    artifact_root: Path
    sections: Mapping[str, Any] = field(default_factory=dict)
    server_url: str | None = None
    server_token: str | None = field(default=None, repr=False)  # never printed
    # s3://bucket/prefix: the bucket holds the artifacts and ``artifact_root`` caches them
    artifacts_url: str | None = None
    aws: Mapping[str, str] = field(default_factory=dict, repr=False)  # AWS_* (credentials)

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def section(self, name: str) -> Mapping[str, Any]:
        value = self.sections.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{name}] in the workspace config must be a table")
        return value


def read_config_file(root: Path) -> dict[str, Any]:
    """The raw ``modelyard`` table for the workspace at ``root`` ({} when there is none)."""
    own = root / CONFIG_FILE
    if own.is_file():
        return _load_toml(own)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        tool = _load_toml(pyproject).get("tool", {})
        section = tool.get("modelyard", {}) if isinstance(tool, dict) else {}
        return dict(section) if isinstance(section, dict) else {}
    return {}


def has_config(root: Path) -> bool:
    if (root / CONFIG_FILE).is_file():
        return True
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            tool = _load_toml(pyproject).get("tool", {})
        except ConfigError:
            return False
        return isinstance(tool, dict) and "modelyard" in tool
    return False


def load_settings(root: Path, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw = read_config_file(root)
    values: dict[str, Any] = {}
    store = raw.get("store", {})
    artifacts = raw.get("artifacts", {})
    if not isinstance(store, dict) or not isinstance(artifacts, dict):
        raise ConfigError("[store] and [artifacts] in the workspace config must be tables")
    if "url" in store:
        values["store_url"] = store["url"]
    if "root" in artifacts:
        values["artifact_root"] = artifacts["root"]
    if "url" in artifacts:
        values["artifacts_url"] = artifacts["url"]
    for var, key in ENV_KEYS.items():
        if env.get(var):
            values[key] = env[var]

    store_url = str(values.get("store_url") or default_store_url(root))
    if store_url.startswith("sqlite:///") and not store_url.startswith("sqlite:////"):
        # A relative SQLite path is relative to the workspace, not to the current directory.
        rel = store_url.removeprefix("sqlite:///")
        if rel and rel != ":memory:":
            store_url = f"sqlite:///{(root / rel).resolve()}"
    artifact_root = Path(str(values.get("artifact_root") or root / STATE_DIR / "artifacts"))
    if not artifact_root.is_absolute():
        artifact_root = (root / artifact_root).resolve()
    sections = {k: v for k, v in raw.items() if k not in {"store", "artifacts"}}
    return Settings(
        root=root,
        store_url=store_url,
        artifact_root=artifact_root,
        sections=sections,
        server_url=values.get("server_url") or None,
        server_token=values.get("server_token") or None,
        artifacts_url=str(values.get("artifacts_url") or "") or None,
        aws={k: v for k, v in env.items() if k.startswith("AWS_") and v},
    )


def default_store_url(root: Path) -> str:
    return f"sqlite:///{(root / STATE_DIR / 'modelyard.db').resolve()}"


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
