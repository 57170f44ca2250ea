"""``register``: a logged model (by run) or a model folder (by path) becomes version N+1."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import InvalidParameter, NotFound
from modelyard.models._common import actor
from modelyard.models.log import logged_models, read_stored_meta
from modelyard.refs import validate_name
from modelyard.tracking.model_folder import MODEL_FILE, parse_model_meta

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

NODE_MODEL_VERSION = "model_version"
NODE_RUN = "run"
NODE_ARTIFACT = "artifact"
REL_OUTPUT = "output"  # the relation tracked runs use for everything they produce
REL_REGISTERED_AS = "registered_as"
REL_CONTAINS = "contains"  # a pipeline run and its step runs

_MAX_TAG_KEY = 256


def register(
    source: str | Path,
    name: str,
    *,
    artifact: str = "model",
    run: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    trust_pickle: bool = False,
    workspace: Workspace | None = None,
) -> ModelVersion:
    """Register ``source`` as the next version of model ``name``.

    ``source`` is a run id (or a unique prefix of one) whose logged model ``artifact`` is
    taken — a pipeline run stands for the one step run that logged it — or the path of a saved
    model folder. A folder can be linked to the run that made it with ``run``. The version
    records the run, so lineage reaches the run's datasets, code and environment.
    ``trust_pickle`` records an admin's trust in the version's own code (see
    :mod:`modelyard.models.trust`).

    Registering the same content from the same run again returns the version it already made
    (a retried retrain, a re-run pipeline): one artifact, one version.
    """
    from modelyard.workspace import resolve as resolve_workspace

    validate_name(name, "model name")
    check_tags(tags or {})
    ws = resolve_workspace(workspace)
    path = Path(source)
    if isinstance(source, Path) or path.exists():
        digest, where = _store_folder(ws, path)
        meta = read_stored_meta(ws, digest, where)
        run_id = ws.store.runs.resolve_id(run) if run is not None else None
        origin = str(path.resolve())
    else:
        if run is not None:
            raise InvalidParameter(
                "'run' links a model folder to a run; a run source is already one"
            )
        run_id, digest = _logged_model(ws, _run_id(ws, str(source)), artifact)
        meta = read_stored_meta(ws, digest, f"artifact {artifact!r} of run {run_id}")
        origin = f"run:{run_id}/{artifact}"
    who = actor()
    version = ws.store.models.add_version(
        name,
        digest=digest,
        flavor=meta.flavor,
        signature=meta.signature,
        requirements=meta.requirements,
        run_id=run_id,
        source=origin,
        description=description,
        tags=tags,
        trusted_pickle=trust_pickle,
        trusted_by=who if trust_pickle else None,
        created_by=who,
    )
    if run_id is not None:
        ws.store.lineage.add(NODE_RUN, run_id, NODE_MODEL_VERSION, version.ref, REL_OUTPUT)
    ws.store.lineage.add(NODE_ARTIFACT, digest, NODE_MODEL_VERSION, version.ref, REL_REGISTERED_AS)
    return version


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        if not isinstance(key, str) or not key.strip() or len(key) > _MAX_TAG_KEY:
            raise InvalidParameter(f"tag name {key!r} must be 1-{_MAX_TAG_KEY} characters")
        if not isinstance(value, str):
            raise InvalidParameter(f"tag {key!r} must have a text value, not {value!r}")
    return tags


def _store_folder(ws: Workspace, path: Path) -> tuple[str, str]:
    """Put a model folder into the artifact store; a path to its ``modelyard-model.json``
    means the folder around it."""
    folder = path.parent if path.is_file() and path.name == MODEL_FILE else path
    where = f"model folder {str(path)!r}"
    if not folder.is_dir():
        raise InvalidParameter(
            f"{where} is a file; register a folder written by modelyard.flavors.save_model"
        )
    meta_file = folder / MODEL_FILE
    if not meta_file.is_file():
        raise NotFound(f"{where} is not a saved model: it has no {MODEL_FILE}")
    parse_model_meta(meta_file.read_bytes(), where)  # fail before copying anything
    digest, _ = ws.artifacts.put_dir(folder)
    return digest, where


def _run_id(ws: Workspace, text: str) -> str:
    from modelyard.errors import InvalidReference

    try:
        return ws.store.runs.resolve_id(text)
    except InvalidReference:
        raise NotFound(f"{text!r} is neither a model folder nor a run id") from None


def _logged_model(ws: Workspace, run_id: str, artifact: str) -> tuple[str, str]:
    """``(run id, digest)`` of the model ``artifact`` that ``run_id`` logged; for a pipeline
    run, that of the one step run (this pipeline's, or a cached one it reused) that did."""
    models = logged_models(ws, run_id)
    for found in models:
        if found.name == artifact:
            return run_id, found.digest
    steps = [
        e.target_id
        for e in ws.store.lineage.edges_from(NODE_RUN, run_id)
        if e.relation == REL_CONTAINS and e.target_type == NODE_RUN
    ]
    holders = [
        (step, found.digest)
        for step in steps
        for found in logged_models(ws, step)
        if found.name == artifact
    ]
    if len(holders) == 1:
        return holders[0]
    if holders:
        runs = ", ".join(step for step, _ in holders)
        raise InvalidParameter(
            f"several steps of pipeline run {run_id} logged a model {artifact!r} (runs {runs}); "
            "register one of those step runs"
        )
    if not models:
        raise NotFound(
            f"run {run_id} has no logged model; log one with run.log_model(model, {artifact!r})"
        )
    names = ", ".join(m.name for m in models)
    raise NotFound(f"run {run_id} has no logged model {artifact!r} (it has: {names})")
