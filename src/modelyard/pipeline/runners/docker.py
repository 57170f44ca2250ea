"""The docker runner: every step execution in a container of its own, from the *step image*.

The step image holds the project's code and its locked dependencies (the exact versions
installed here, where the pipeline was written and tested), built offline from a wheelhouse on
the host with :mod:`modelyard.images`. It is tagged by the hash of everything that goes into
it, so an unchanged project reuses it and ``prepare`` costs one ``docker image inspect``.

Each container runs the worker (``python -m modelyard.pipeline.worker TASK``) with the
workspace bind-mounted at the same absolute path, so every path in the task file stays valid,
and as the host user, so the files it writes into the workspace belong to that user. It uses the
host's network by default, so a store at ``127.0.0.1`` (PostgreSQL) is reachable from it.

Workspace config (``modelyard.toml``)::

    [docker]
    base_image = "modelyard/base:py3.11-bookworm"   # built by 'modelyard base build'
    requirements = ["scikit-learn", "skops"]         # installed packages the steps import
    network = "host"
    # image = "registry/team/steps:1"                # a prebuilt step image: skip the build

Without ``requirements`` the shared step image holds the installed distributions the project's
code imports (and ``skops`` with scikit-learn, for modelyard's serializers). A step may have an
image of its own (``[pipeline.steps.NAME]`` or ``@step(image=..., requirements=...)``, see
:mod:`modelyard.pipeline.step_images`): the orchestrator puts it in the task file, and this
runner uses that image, or builds one holding modelyard and only the step's requirements.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard import image_contract as contract
from modelyard.errors import ConfigError, ModelyardError
from modelyard.pipeline.runners.base import WORKER_MODULE, Execution
from modelyard.pipeline.step_images import (
    DEFAULT_REQUIREMENTS,
    base_image_of,
    own_requirements,
    project_code,
)

if TYPE_CHECKING:
    from modelyard.images import DockerEngine
    from modelyard.workspace import Workspace


class DockerRunner:
    """Runs each step in its own container; see the module docstring for what the image and
    the container get."""

    name = "docker"

    def __init__(
        self,
        *,
        engine: DockerEngine | None = None,
        base_image: str | None = None,
        requirements: Sequence[str] | None = None,
        image: str | None = None,
        network: str = "host",
        wheelhouse_dir: Path | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        from modelyard.images import DEFAULT_BASE_IMAGE, DockerEngine
        from modelyard.images import validate as v

        self.engine = engine or DockerEngine.from_env()
        self.base_image = v.check_image_ref("base image", base_image or DEFAULT_BASE_IMAGE)
        # None: what the project's code imports, found when the image is built
        self.requirements = None if requirements is None else tuple(requirements)
        self.image = v.check_image_ref("step image", image) if image else None
        self.network = v.check_text("docker network", network)
        self.wheelhouse_dir = wheelhouse_dir
        self.progress = progress or (lambda _msg: None)
        self._lock = threading.Lock()
        self._own_images: dict[tuple[str, ...], str] = {}
        self._workspace_root: Path | None = None
        self._pipeline_file: Path | None = None

    @classmethod
    def from_workspace(cls, workspace: Workspace) -> DockerRunner:
        """A runner configured by the workspace's ``[docker]`` table (all keys optional)."""
        from modelyard.pipeline.step_images import check_requirements

        conf = workspace.settings.section("docker")
        requirements = None
        if "requirements" in conf:
            try:
                listed = check_requirements(conf["requirements"], "[docker] requirements")
            except ModelyardError as exc:
                raise ConfigError(exc.message) from None
            requirements = (*DEFAULT_REQUIREMENTS, *listed)
        wheelhouse = conf.get("wheelhouse")
        return cls(
            base_image=base_image_of(workspace),
            requirements=requirements,
            image=_opt_str(conf, "image"),
            network=_opt_str(conf, "network") or "host",
            wheelhouse_dir=(workspace.root / str(wheelhouse)) if wheelhouse else None,
        )

    # -- Runner protocol -------------------------------------------------------------------------

    def prepare(self, workspace_root: Path, pipeline_file: Path) -> None:
        """Reach the engine (naming its socket if it does not answer) and make sure the step
        image exists, building it when the project's code or dependencies changed."""
        self.engine.ping()
        with self._lock:
            self._workspace_root, self._pipeline_file = workspace_root, pipeline_file
            if self.image is None or not self.engine.image_exists(self.image):
                self.image = self.image or self._build(self.shared_requirements(pipeline_file))

    def shared_requirements(self, pipeline_file: Path) -> tuple[str, ...]:
        """The shared step image's packages: ``[docker] requirements``, or what the project's
        code imports; with what modelyard needs to serialize their values."""
        from modelyard.pipeline.step_images import detect_requirements, with_implied

        if self.requirements is not None:
            return with_implied(self.requirements)
        code = [path for _rel, path in project_code(pipeline_file.resolve().parent)]
        return with_implied((*DEFAULT_REQUIREMENTS, *detect_requirements(code)))

    def _build(self, requirements: Sequence[str]) -> str:
        assert self._workspace_root is not None
        assert self._pipeline_file is not None
        return build_step_image(
            self._workspace_root,
            self._pipeline_file,
            engine=self.engine,
            base_image=self.base_image,
            requirements=requirements,
            wheelhouse_dir=self.wheelhouse_dir,
            progress=self.progress,
        )

    def image_for(self, task: Mapping[str, Any]) -> str | None:
        """The step's own image (its ``environment`` in the task), built once per set of
        requirements; else the shared one (None before ``prepare``)."""
        from modelyard.pipeline.step_images import check_image, check_requirements

        env = task.get("environment") or {}
        if not isinstance(env, Mapping):
            raise ConfigError("task file: environment must be an object")
        if env.get("image"):
            return check_image(env["image"], f"step {task.get('step')!r}")
        own = check_requirements(env.get("requirements") or [], f"step {task.get('step')!r}")
        if not own:
            return self.image
        wanted = own_requirements(own)
        with self._lock:
            if wanted not in self._own_images:
                self._own_images[wanted] = self._build(wanted)
            return self._own_images[wanted]

    def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> Execution:
        started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        task = json.loads(task_path.read_text(encoding="utf-8"))
        image = self.image_for(task)
        if image is None:
            log_path.write_text("docker runner: prepare() was not called; no step image\n")
            return Execution(None, False, 0.0, log_path)
        container = f"modelyard-step-{uuid.uuid4().hex[:12]}"
        args = self.run_args(task, task_path, container, image)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                self.engine.command(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.engine.process_env(),
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill(container, proc)
                return Execution(None, True, time.monotonic() - started, log_path)
            except BaseException:  # Ctrl-C in the orchestrator: do not leave the step running
                self._kill(container, proc)
                raise
        return Execution(_signal_code(code), False, time.monotonic() - started, log_path)

    # -- helpers ---------------------------------------------------------------------------------

    def run_args(
        self, task: Mapping[str, Any], task_path: Path, container: str, image: str | None = None
    ) -> list[str]:
        """The ``docker run`` arguments for one task (public for tests and for debugging)."""
        image = image or self.image
        assert image is not None
        root = str(task["workspace_root"])
        args = ["run", "--rm", "--name", container, "--network", self.network]
        args += ["--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp", "-w", root]
        args += ["--label", "io.modelyard.kind=pipeline-step"]
        args += ["--label", f"io.modelyard.step={task.get('step', '')}"]
        for path in _mounts(task, task_path):
            args += ["-v", f"{path}:{path}"]
        args += ["--entrypoint", "python", image, "-m", WORKER_MODULE, str(task_path)]
        return args

    def _kill(self, container: str, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(Exception):
            self.engine.run(["kill", container], check=False, timeout=30)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def build_step_image(
    workspace_root: Path,
    pipeline_file: Path,
    *,
    engine: DockerEngine,
    base_image: str,
    requirements: Sequence[str] = DEFAULT_REQUIREMENTS,
    wheelhouse_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """Build (or find) the step image for a project and return its tag,
    ``modelyard-step/<workspace>:<content hash>``."""
    from modelyard.images import (
        DEFAULT_BASE_TAG,
        ImageSpec,
        build_base_image,
        build_image_from_spec,
        build_modelyard_wheel,
        lock_from_environment,
        prepare_wheelhouse,
    )
    from modelyard.images.wheelhouse import default_wheelhouse_dir

    say = progress or (lambda _msg: None)
    lock = lock_from_environment(requirements, exclude=("modelyard",))
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    house = prepare_wheelhouse(
        lock, wheelhouse_dir or default_wheelhouse_dir(), python_version=python, progress=say
    )
    runtime = build_modelyard_wheel(house.path)
    code_root = pipeline_file.resolve().parent
    payload = {f"project/{rel}": path for rel, path in project_code(code_root)}

    digest = hashlib.sha256()
    digest.update(json.dumps([base_image, sorted(lock.items()), runtime.parent.name]).encode())
    for rel, path in sorted(payload.items()):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    tag = f"modelyard-step/{_slug(workspace_root.name)}:{digest.hexdigest()[:16]}"
    if engine.image_exists(tag):
        return tag
    if base_image == DEFAULT_BASE_TAG and not engine.image_exists(base_image):
        say(f"base image {base_image} is missing; building it from Debian packages")
        build_base_image(base_image, engine=engine, progress=say)
    spec = ImageSpec(
        base_image=base_image,
        requirements=lock,
        runtime_wheel=runtime,
        payload=payload,
        labels={
            "io.modelyard.kind": "pipeline-step",
            "io.modelyard.pipeline-file": pipeline_file.name,
        },
        title=f"{workspace_root.name} pipeline steps",
        env={"PYTHONPATH": f"{contract.APP_DIR}/project"},
        entrypoint=("python", "-m", WORKER_MODULE),
    )
    say(f"building step image {tag}")
    build_image_from_spec(spec, tag, wheelhouse=house, engine=engine, progress=say)
    return tag


def _mounts(task: Mapping[str, Any], task_path: Path) -> list[str]:
    """Host folders the worker reads or writes: the workspace, and the artifact store, the
    SQLite file and the task when they live elsewhere. Nested ones are covered by a parent."""
    wanted = [Path(str(task["workspace_root"])), Path(str(task["artifact_root"])), task_path.parent]
    url = str(task.get("store_url", ""))
    if url.startswith("sqlite:///"):
        wanted.append(Path(url.removeprefix("sqlite:///")).parent)
    resolved = sorted({p.resolve() for p in wanted}, key=lambda p: (len(p.parts), str(p)))
    mounts: list[Path] = []
    for path in resolved:
        if not any(path == m or m in path.parents for m in mounts):
            mounts.append(path)
    for path in mounts:
        path.mkdir(parents=True, exist_ok=True)
    return [str(p) for p in mounts]


def _signal_code(code: int) -> int:
    """``docker run`` reports a container killed by signal N as 128+N; the Runner protocol
    (like :mod:`subprocess`) says -N."""
    if 128 < code <= 128 + 64:
        return -(code - 128)
    return code


def _slug(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return cleaned[:60] or "workspace"


def _opt_str(conf: Mapping[str, Any], key: str) -> str | None:
    value = conf.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[docker] {key} must be a string")
    return value
