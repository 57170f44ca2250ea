"""The workspace: a folder with ``modelyard.toml`` (or ``[tool.modelyard]`` in pyproject.toml)
and its ``.modelyard/`` state folder. It is the project object every command is handed; it opens
the metadata store and the artifact store lazily, on first use.

Code that is not handed one (a pipeline step calling ``modelyard.data.add(...)``) finds the
*current* workspace: the one made current with ``with ws.use():`` in this thread or asyncio task
(a :class:`~contextvars.ContextVar`, never ``os.environ``), else the folder it runs in."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.config import CONFIG_FILE, STATE_DIR, Settings, has_config, load_settings
from modelyard.errors import WorkspaceNotFound

if TYPE_CHECKING:
    from modelyard.artifacts import ArtifactStore
    from modelyard.store.protocols import MetadataStore

_CURRENT: ContextVar[Workspace | None] = ContextVar("modelyard_workspace", default=None)

_CONFIG_TEMPLATE = """\
# modelyard workspace configuration. Every key can be overridden by an environment variable.

[store]
# Metadata database. Default: SQLite in .modelyard/ (nothing to set up).
# For a team: url = "postgresql://user@host:5432/modelyard"   (MODELYARD_STORE_URL)
# url = "sqlite:///.modelyard/modelyard.db"

[artifacts]
# Content-addressed blobs (datasets, models, step outputs).       (MODELYARD_ARTIFACT_ROOT)
# root = ".modelyard/artifacts"
# For a team: url = "s3://bucket/prefix"  (MODELYARD_ARTIFACTS_URL; endpoint, region and
# credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID…; root is then its cache)
"""


class Workspace:
    """One workspace. Construct with :meth:`find`, :meth:`init` or :meth:`at`; building it
    does not touch the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: MetadataStore | None = None
        self._artifacts: ArtifactStore | None = None

    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    @classmethod
    def at(cls, root: Path, environ: Mapping[str, str] | None = None) -> Workspace:
        return cls(load_settings(root.resolve(), environ))

    @classmethod
    def find(cls, start: Path | None = None, environ: Mapping[str, str] | None = None) -> Workspace:
        """The workspace containing ``start`` (default: the current folder), searched upwards
        like git. ``MODELYARD_WORKSPACE`` names one explicitly. Inside ``with ws.use():`` (and
        no argument given) it is a new handle on that workspace, with its settings."""
        here_and_now = current()
        if start is None and environ is None and here_and_now is not None:
            return cls(here_and_now.settings)
        env = os.environ if environ is None else environ
        if start is None and env.get("MODELYARD_WORKSPACE"):
            explicit = Path(env["MODELYARD_WORKSPACE"]).resolve()
            if not is_workspace(explicit):
                raise WorkspaceNotFound(
                    f"MODELYARD_WORKSPACE={explicit} is not a modelyard workspace "
                    "(no modelyard.toml); run 'modelyard init' there"
                )
            return cls.at(explicit, env)
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if is_workspace(folder):
                return cls.at(folder, env)
        raise WorkspaceNotFound(
            f"no modelyard workspace in {here} or any parent folder; run 'modelyard init'"
        )

    @classmethod
    def init(cls, root: Path, environ: Mapping[str, str] | None = None) -> tuple[Workspace, bool]:
        """Create a workspace at ``root`` (idempotent). Returns ``(workspace, created)``."""
        root = root.resolve()
        root.mkdir(parents=True, exist_ok=True)
        created = not is_workspace(root)
        if not has_config(root):
            (root / CONFIG_FILE).write_text(_CONFIG_TEMPLATE)
        state = root / STATE_DIR
        state.mkdir(exist_ok=True)
        ignore = state / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# modelyard state: the store and artifacts, not for git\n*\n")
        ws = cls.at(root, environ)
        ws.store  # noqa: B018 - create and migrate the database now, so init reports problems
        return ws, created

    @property
    def store(self) -> MetadataStore:
        """The metadata store: SQL (SQLite, PostgreSQL) or a team server's, lazily opened."""
        if self._store is None:
            if self.settings.server_url:
                from modelyard.remote import RemoteStore

                self._store = RemoteStore.connect(
                    self.settings.server_url, self.settings.server_token
                )
            else:
                from modelyard.store import Store

                self._store = Store.open(self.settings.store_url)
        return self._store

    @property
    def artifacts(self) -> ArtifactStore:
        """The artifact store: a local folder, or a bucket or a team server behind a local
        cache."""
        if self._artifacts is None:
            if self.settings.server_url:
                from modelyard.remote import RemoteArtifactStore, RemoteStore

                store = self.store
                assert isinstance(store, RemoteStore)
                # The local artifact folder becomes a cache of the server's blobs.
                self._artifacts = RemoteArtifactStore(self.settings.artifact_root, store.client)
            elif self.settings.artifacts_url:
                from modelyard.artifacts.s3 import S3ArtifactStore, aws_settings

                # The bucket holds the blobs; the local artifact folder caches them.
                self._artifacts = S3ArtifactStore(
                    self.settings.artifacts_url,
                    self.settings.artifact_root,
                    aws=aws_settings(self.settings.aws),
                )
            else:
                from modelyard.artifacts import LocalArtifactStore

                self._artifacts = LocalArtifactStore(self.settings.artifact_root)
        return self._artifacts

    @contextmanager
    def use(self) -> Iterator[Workspace]:
        """Make this the current workspace of the code inside the block, in this thread or
        asyncio task only (other threads, and the process environment, are untouched)."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"


def is_workspace(folder: Path) -> bool:
    return has_config(folder)


def current() -> Workspace | None:
    """The workspace made current by :meth:`Workspace.use` here, if any."""
    return _CURRENT.get()


def resolve(workspace: Workspace | None) -> Workspace:
    """The given workspace, else the current one (:meth:`Workspace.use`), else the one around
    the current folder."""
    if workspace is not None:
        return workspace
    return current() or Workspace.find()
