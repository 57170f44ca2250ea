"""``reproduce``: make a model version again from what its run recorded, and say what matched.

What made ``NAME@V`` is re-run from its records:

- **data**: the dataset versions the runs read, by digest. Their blobs are re-hashed first; a
  re-run reading ``iris`` (no version) gets the version the run read, not a newer one.
- **code**: the recorded commit, checked out clean in a temporary git worktree. A run whose
  tree had uncommitted changes is refused unless ``patch`` is a file whose digest is the
  recorded diff's; it is then applied on top.
- **environment**: a fresh venv from the recorded lock, or the current interpreter.
- **parameters**: a pipeline step gets the recorded values (``params`` may override some);
  a script gets its recorded arguments and logs its parameters again.

The re-run is a pipeline step (:func:`~modelyard.pipeline.replay_pipeline`: that step and the
steps upstream of it, taking over those that only published dataset versions) or the script
that started the run (its recorded command), in a child process of the chosen interpreter
(:mod:`modelyard.reproduce.child`). ``SOURCE_DATE_EPOCH`` is the version's recorded
``created`` time, so the model's metadata is dated as the original's. Every run it starts is
tagged ``modelyard.reproduces=<original run>``.

Each row compares what the new runs recorded with what the original ones did: the dataset
versions they read, the commit and diff they ran, the environment lock, the parameters they
logged and the digest of the artifact. A row that could not be checked says why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter, ModelyardError, NotFound

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion
    from modelyard.store.tracking_entities import Run
    from modelyard.workspace import Workspace

MATCHED = "matched"
DIFFERS = "differs"
NOT_CHECKED = "not checked"
ROWS = ("data", "code", "environment", "parameters", "artifact")
ENVS = ("fresh", "current")
_LOG_TAIL = 12


@dataclass(frozen=True)
class Row:
    name: str
    status: str  # matched | differs | not checked
    reason: str


@dataclass(frozen=True)
class Reproduction:
    version: str  # NAME@V
    rows: tuple[Row, ...]
    digest: str  # the version's artifact digest
    new_digest: str | None  # what the re-run made (None: nothing)
    run_id: str | None  # the new run that made it
    seconds: float

    @property
    def identical(self) -> bool:
        return self.new_digest == self.digest

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)


class _Stop(Exception):
    """Nothing can be re-run: ``row`` says why."""

    def __init__(self, row: str, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


@dataclass(frozen=True)
class _Plan:
    """What re-makes the version: a pipeline step, or a script."""

    kind: str  # pipeline | script
    describe: str
    pipeline_run: str | None = None
    step: str | None = None
    pipeline_file: str | None = None
    pipeline_params: Mapping[str, Any] | None = None
    source: Any = None  # tracking.replay.Source


def reproduce(
    ref: str,
    *,
    workspace: Workspace | None = None,
    env: str = "fresh",
    patch: Path | None = None,
    params: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Reproduction:
    """Re-run what produced model version ``ref`` and compare. ``env``: ``fresh`` (a new venv
    from the recorded lock) or ``current`` (this interpreter). ``patch``: the run's
    uncommitted changes (``git diff HEAD --binary``), required when its tree was dirty.
    ``params``: overrides of a pipeline's recorded parameters."""
    from modelyard.workspace import resolve as resolve_workspace

    if env not in ENVS:
        raise InvalidParameter(f"--env is one of {', '.join(ENVS)}, not {env!r}")
    if patch is not None and not patch.is_file():
        raise NotFound(f"patch file {patch} does not exist")
    say = progress or (lambda _msg: None)
    ws = resolve_workspace(workspace)
    try:
        return _reproduce_version(ws, ref, env, patch, dict(params or {}), say)
    finally:
        if workspace is None:  # found here: close its store
            ws.close()


def _reproduce_version(
    ws: Workspace,
    ref: str,
    env: str,
    patch: Path | None,
    params: dict[str, str],
    say: Callable[[str], None],
) -> Reproduction:
    from modelyard.models import resolve as resolve_model

    version = resolve_model(ref, workspace=ws)
    began = time.monotonic()
    rows: dict[str, Row] = {}
    new_digest: str | None = None
    new_run: str | None = None
    try:
        new_run, new_digest = _reproduce(ws, version, env, patch, params, rows, say)
    except _Stop as stop:
        rows[stop.row] = Row(stop.row, DIFFERS, stop.reason)
        for name in ROWS:
            if name not in rows:
                rows[name] = Row(name, NOT_CHECKED, f"not re-run: {stop.row} — {stop.reason}")
            elif rows[name].status == MATCHED and name != stop.row:
                rows[name] = Row(name, NOT_CHECKED, f"{rows[name].reason} (not re-run)")
    return Reproduction(
        version.ref,
        tuple(rows[name] for name in ROWS),
        version.digest,
        new_digest,
        new_run,
        time.monotonic() - began,
    )


def _reproduce(
    ws: Workspace,
    version: ModelVersion,
    env: str,
    patch: Path | None,
    params: dict[str, str],
    rows: dict[str, Row],
    say: Callable[[str], None],
) -> tuple[str | None, str | None]:
    from modelyard.models import provenance
    from modelyard.reproduce import worktree
    from modelyard.reproduce.venv import EnvironmentFailed, current_interpreter, fresh_venv
    from modelyard.tracking import load_environment

    if version.run_id is None:
        why = (
            f"{version.ref} was registered from {version.source or 'a folder'}, not from a "
            "tracked run: nothing records how it was made"
        )
        for name in ROWS:
            rows[name] = Row(name, DIFFERS if name == "artifact" else NOT_CHECKED, why)
        return None, None
    run = ws.store.runs.get(version.run_id)
    recorded = provenance(ws, version)
    rows["data"] = _check_recorded_data(ws, recorded.datasets)
    rows["parameters"] = Row(
        "parameters", MATCHED, "recorded: " + _params_text(dict(sorted(recorded.params.items())))
    )
    code = _check_code(ws, run, patch)
    rows["code"] = Row("code", MATCHED, code.describe)
    plan = _plan(ws, run)
    if params and plan.kind != "pipeline":
        raise InvalidParameter(
            "--param overrides a pipeline's parameters; a script's come from its code and arguments"
        )
    if run.environment_digest is None:
        raise _Stop("environment", f"run {run.id[:12]} recorded no environment lock")
    lock = load_environment(ws, run.environment_digest)
    artifact = _artifact_name(version)
    epoch = _created_epoch(ws, version)

    with (
        tempfile.TemporaryDirectory(prefix="modelyard-reproduce-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        scratch = Path(tmp)
        say(f"checking out {code.commit[:12]} into a temporary worktree")
        try:
            tree = stack.enter_context(
                worktree.checkout(code.repo, code.commit, scratch / "code", patch)
            )
        except worktree.GitFailed as exc:
            raise _Stop("code", f"checking out {code.commit[:12]} failed: {exc}") from None
        spec = _spec(ws, run, plan, code, tree, scratch, params, recorded.datasets)
        if env == "current":
            interpreter = current_interpreter()
        else:
            say(f"creating a venv from the lock ({len(lock.packages)} packages)")
            try:
                interpreter = fresh_venv(lock, scratch / "venv", tree)
            except EnvironmentFailed as exc:
                raise _Stop("environment", str(exc)) from None
        say(f"re-running {plan.describe}")
        result = _run_child(interpreter.python, spec, scratch, tree, epoch)

    target = result.get("target_run") or _pick_run(ws, result.get("runs") or [], run)
    if target is None:
        error = result.get("error")
        raise _Stop("artifact", f"the re-run failed: {error}" if error else "it started no run")
    new = ws.store.runs.get(target)
    originals, again = _repeated_runs(ws, plan, result, run, new)
    rows["data"] = _compare_data(ws, originals, again)
    rows["code"] = _compare_code(run, new, code)
    rows["environment"] = _compare_environment(ws, run, new, interpreter.description)
    rows["parameters"] = _compare_params(originals, again, params)
    digest = next((a.digest for a in ws.store.runs.artifacts(new.id) if a.name == artifact), None)
    rows["artifact"] = _compare_artifact(ws, version, artifact, digest, result.get("error"))
    return new.id, digest


# -- what made the version ---------------------------------------------------------------------


def _plan(ws: Workspace, run: Run) -> _Plan:
    from modelyard.tracking.replay import SOURCE_TAG, Source

    if run.parent_id is not None:
        try:
            pipe = ws.store.pipelines.get(run.parent_id)
        except NotFound:
            pipe = None
        step = next((s for s in pipe.steps if s.run_id == run.id), None) if pipe else None
        if pipe is not None and step is not None:
            return _Plan(
                "pipeline",
                f"step {step.step!r} of pipeline {pipe.pipeline!r} (run {pipe.id[:12]})",
                pipeline_run=pipe.id,
                step=step.step,
                pipeline_file=pipe.pipeline_file,
                pipeline_params=pipe.params,
            )
    source = Source.from_json(run.tags.get(SOURCE_TAG, ""))
    if source is not None:
        command = source.script or f"-m {source.module}"
        args = " ".join(source.args)
        return _Plan(
            "script",
            f"python {command}{' ' + args if args else ''}",
            source=source,
        )
    raise _Stop(
        "code",
        f"run {run.id[:12]} records no command to run again: only a pipeline step or a "
        "script's top-level run can be re-run (it was started from an interactive session, "
        "a notebook, or by a modelyard older than reproduce)",
    )


@dataclass(frozen=True)
class _Code:
    repo: Path
    commit: str
    ws_rel: Path  # the workspace folder inside the repository
    describe: str


def _check_code(ws: Workspace, run: Run, patch: Path | None) -> _Code:
    from modelyard.hashing import digest_bytes
    from modelyard.reproduce import worktree

    if run.git_commit is None:
        raise _Stop(
            "code",
            f"run {run.id[:12]} recorded no git commit: its workspace {ws.root} was not in a "
            "git repository with a commit (or git was missing), so there is no code to check out",
        )
    if run.git_dirty is None:
        raise _Stop(
            "code", f"run {run.id[:12]} recorded a commit but not whether its tree was clean"
        )
    repo = worktree.toplevel(ws.root)
    if repo is None:
        raise _Stop("code", f"the workspace {ws.root} is no longer in a git repository")
    if not worktree.has_commit(repo, run.git_commit):
        raise _Stop(
            "code",
            f"commit {run.git_commit[:12]} is not in the repository at {repo} (rebased away, or "
            "not fetched)",
        )
    describe = f"commit {run.git_commit[:12]}, checked out clean in a temporary worktree"
    if run.git_dirty:
        recorded = run.git_diff_digest
        if patch is None:
            raise _Stop(
                "code",
                f"the run's tree had uncommitted changes (diff {recorded}); pass them with "
                "--patch FILE (the output of 'git diff HEAD --binary' of that tree)",
            )
        given = digest_bytes(patch.read_bytes())
        if given != recorded:
            raise _Stop(
                "code",
                f"--patch {patch} is {given}, but the run's uncommitted changes were {recorded}",
            )
        describe += f", plus --patch ({given[:19]}…, the recorded diff)"
    elif patch is not None:
        raise InvalidParameter(f"run {run.id[:12]} ran a clean tree: it needs no --patch")
    return _Code(repo, run.git_commit, ws.root.resolve().relative_to(repo), describe)


def _spec(
    ws: Workspace,
    run: Run,
    plan: _Plan,
    code: _Code,
    tree: Path,
    scratch: Path,
    params: dict[str, str],
    datasets: Mapping[str, str],
) -> Path:
    from modelyard.reproduce.child import SPEC_FORMAT

    code_folder = tree / code.ws_rel
    spec: dict[str, Any] = {
        "format": SPEC_FORMAT,
        "workspace_root": str(ws.root),
        "of_run": run.id,
        "code_folder": str(code_folder),
        "datasets": dict(datasets),
        "result_path": str(scratch / "result.json"),
        "kind": plan.kind,
    }
    if plan.kind == "pipeline":
        assert plan.pipeline_file is not None
        try:
            rel = Path(plan.pipeline_file).resolve().relative_to(code.repo)
        except ValueError:
            raise _Stop(
                "code", f"the pipeline file {plan.pipeline_file} is outside the repository"
            ) from None
        if not (tree / rel).is_file():
            raise _Stop("code", f"{rel} is not in commit {code.commit[:12]} (it was not committed)")
        spec.update(
            pipeline_run=plan.pipeline_run,
            step=plan.step,
            pipeline_file=str(tree / rel),
            params={**dict(plan.pipeline_params or {}), **params},
        )
    else:
        source = plan.source
        cwd = _inside(tree, source.cwd, "working folder")
        if source.module is not None and not _MODULE.fullmatch(source.module):
            raise _Stop("code", f"the recorded module {source.module!r} is not a module name")
        if source.script is not None and not _inside(tree, source.script, "script").is_file():
            raise _Stop(
                "code",
                f"{source.script} is not in commit {code.commit[:12]} (it was not committed)",
            )
        spec.update(
            script=str(tree / source.script) if source.script else None,
            module=source.module,
            args=list(source.args),
            cwd=str(cwd if cwd.is_dir() else tree),
        )
    path = scratch / "spec.json"
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return path


_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _inside(tree: Path, relative: str, what: str) -> Path:
    """``tree / relative``, refused when the recorded path leads out of the checkout (tags can
    be edited, so they are checked like any user input)."""
    path = (tree / relative).resolve()
    if path != tree.resolve() and tree.resolve() not in path.parents:
        raise _Stop("code", f"the recorded {what} {relative!r} is outside the repository")
    return path


def _run_child(
    python: str, spec: Path, scratch: Path, tree: Path, epoch: int | None
) -> dict[str, Any]:
    env = dict(os.environ)
    if epoch is not None:
        env["SOURCE_DATE_EPOCH"] = str(epoch)
    log = scratch / "child.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [python, "-m", "modelyard.reproduce.child", str(spec)],
            cwd=tree,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    result_path = scratch / "result.json"
    if not result_path.is_file():
        raise _Stop(
            "artifact",
            f"the re-run exited with status {done.returncode} and no result: {_tail(log)}",
        )
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    if result.get("error"):
        result["error"] = f"{result['error']} ({_tail(log)})"
    return result


def _tail(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return " | ".join(lines[-_LOG_TAIL:]) or "no output"


def _pick_run(ws: Workspace, started: list[str], original: Run) -> str | None:
    """The script's run that stands for the original: the same name, else the first."""
    tops = [r for r in started if ws.store.runs.get(r).parent_id is None]
    same = [r for r in tops if ws.store.runs.get(r).name == original.name]
    return next(iter(same or tops), None)


def _repeated_runs(
    ws: Workspace, plan: _Plan, result: dict[str, Any], run: Run, new: Run
) -> tuple[list[Run], list[Run]]:
    """The original runs the re-run repeated, and the runs that repeated them."""
    if plan.kind != "pipeline" or not result.get("pipeline_run"):
        return [run], [new]
    assert plan.pipeline_run is not None
    old = ws.store.pipelines.get(plan.pipeline_run)
    again = ws.store.pipelines.get(result["pipeline_run"])
    pairs = [
        (old.step(s.step).run_id, s.run_id)
        for s in again.steps
        if s.status == "finished" and s.run_id  # the steps taken over kept their run
    ]
    return (
        [ws.store.runs.get(o) for o, _ in pairs if o],
        [ws.store.runs.get(n) for o, n in pairs if o and n],
    )


# -- rows --------------------------------------------------------------------------------------


def _datasets_read(ws: Workspace, runs: list[Run]) -> dict[str, str]:
    """``{"name@N": digest}`` of the dataset versions the runs read."""
    read: dict[str, str] = {}
    for run in runs:
        for edge in ws.store.lineage.edges_to("run", run.id):
            if edge.source_type == "dataset_version" and edge.relation == "input":
                read[edge.source_id] = ""
    for ref in read:
        name, _, number = ref.partition("@")
        try:
            read[ref] = ws.store.datasets.get_version(name, int(number)).digest
        except (NotFound, ValueError):
            read[ref] = "(no such version)"
    return dict(sorted(read.items()))


def _check_recorded_data(ws: Workspace, datasets: Mapping[str, str]) -> Row:
    """The recorded dataset versions (``{name: "name@N"}``) are still there, bytes intact."""
    from modelyard.errors import ArtifactError

    if not datasets:
        return Row(
            "data", MATCHED, "the run read no modelyard dataset (files it read are not checked)"
        )
    read: dict[str, str] = {}
    for ref in sorted(datasets.values()):
        name, _, number = ref.partition("@")
        try:
            digest = ws.store.datasets.get_version(name, int(number)).digest
            ws.artifacts.verify(digest)
        except NotFound:
            raise _Stop("data", f"{ref} is gone from the store or its artifact store") from None
        except ArtifactError as exc:
            raise _Stop("data", f"{ref} no longer matches its digest: {exc}") from None
        read[ref] = digest
    return Row("data", MATCHED, "recorded: " + _datasets_text(read))


def _datasets_text(read: Mapping[str, str]) -> str:
    return ", ".join(f"{ref} ({digest[:19]}…)" for ref, digest in read.items()) or "none"


def _compare_data(ws: Workspace, originals: list[Run], new: list[Run]) -> Row:
    before, after = _datasets_read(ws, originals), _datasets_read(ws, new)
    if before == after:
        if not before:
            return Row("data", MATCHED, "no modelyard dataset read, as recorded")
        return Row("data", MATCHED, "read again: " + _datasets_text(after))
    return Row(
        "data",
        DIFFERS,
        f"the re-run read {_datasets_text(after)} where the run read {_datasets_text(before)}",
    )


def _compare_code(run: Run, new: Run, code: _Code) -> Row:
    if (new.git_commit, new.git_diff_digest) == (run.git_commit, run.git_diff_digest):
        return Row("code", MATCHED, code.describe)
    return Row(
        "code",
        DIFFERS,
        f"the re-run recorded commit {new.git_commit} diff {new.git_diff_digest}, the run "
        f"{run.git_commit} diff {run.git_diff_digest}",
    )


def _compare_environment(ws: Workspace, run: Run, new: Run, how: str) -> Row:
    from modelyard.tracking import load_environment

    if new.environment_digest == run.environment_digest:
        return Row("environment", MATCHED, f"{how}: the same lock as the run")
    assert run.environment_digest is not None
    assert new.environment_digest is not None
    old_env = load_environment(ws, run.environment_digest)
    new_env = load_environment(ws, new.environment_digest)
    changes = []
    if old_env.python_version != new_env.python_version:
        changes.append(f"Python {new_env.python_version} (run: {old_env.python_version})")
    if old_env.platform != new_env.platform:
        changes.append(f"platform {new_env.platform} (run: {old_env.platform})")
    names = sorted(set(old_env.packages) | set(new_env.packages), key=str.lower)
    for name in names:
        was, now = old_env.packages.get(name), new_env.packages.get(name)
        if was != now:
            changes.append(f"{name} {now or 'absent'} (run: {was or 'absent'})")
    shown = ", ".join(changes[:6]) + (f" and {len(changes) - 6} more" if len(changes) > 6 else "")
    return Row("environment", DIFFERS, f"{how}: {shown}")


def _params_of(runs: list[Run]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for run in runs:
        for key, value in run.params.items():
            merged.setdefault(key, value)
    return dict(sorted(merged.items()))


def _params_text(params: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "none logged"


def _compare_params(originals: list[Run], new: list[Run], overrides: Mapping[str, str]) -> Row:
    before, after = _params_of(originals), _params_of(new)
    if before == after:
        return Row("parameters", MATCHED, _params_text(after))
    changes = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            how = " (--param)" if key in overrides else ""
            was, now = before.get(key, "absent"), after.get(key, "absent")
            changes.append(f"{key}={now}{how} where the run had {was}")
    return Row("parameters", DIFFERS, "; ".join(changes))


def _artifact_name(version: ModelVersion) -> str:
    source = version.source or ""
    if source.startswith("run:") and "/" in source:
        return source.split("/", 1)[1]
    return "model"


def _created_epoch(ws: Workspace, version: ModelVersion) -> int | None:
    """The version's ``created`` time as a Unix time (the re-run's ``SOURCE_DATE_EPOCH``)."""
    from modelyard.models.log import read_stored_meta

    try:
        created = read_stored_meta(ws, version.digest, version.ref).raw.get("created")
        return int(dt.datetime.fromisoformat(str(created)).timestamp())
    except (ModelyardError, ValueError):
        return None


def _compare_artifact(
    ws: Workspace, version: ModelVersion, name: str, digest: str | None, error: str | None
) -> Row:
    if digest == version.digest:
        return Row("artifact", MATCHED, f"{name} is {digest}, identical")
    if digest is None:
        why = f"the re-run failed: {error}" if error else f"the re-run logged no artifact {name!r}"
        return Row("artifact", DIFFERS, why)
    files = _changed_files(ws, version.digest, digest)
    return Row(
        "artifact",
        DIFFERS,
        f"{name} is {digest}, the version {version.digest}"
        + (f"; changed: {files}" if files else ""),
    )


def _changed_files(ws: Workspace, old: str, new: str) -> str:
    try:
        before = {e.path: e.digest for e in ws.artifacts.read_manifest(old).entries}
        after = {e.path: e.digest for e in ws.artifacts.read_manifest(new).entries}
    except ModelyardError:
        return ""
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    return ", ".join(changed)
