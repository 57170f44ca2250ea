"""Retrain a deployed model, and replace it only if the new one is better.

    pipeline on the newest data ─► challenger (a logged model of that run)
        ─► champion and challenger scored on the SAME recent labelled data
        ─► wins by the margin?  no ─► keep the champion, record why
                                yes ─► register ─► image (container targets) ─► gate dry-run
                                       ─► roll out ─► move `production`

Nothing that serves changes before the last two steps, and the alias moves only after the
rollout succeeded, so a failure anywhere leaves the champion serving and the alias where it was.
A lease per model (``retrain:NAME`` in the store) makes sure only one retrain of a model runs,
however many monitors are watching; it is released on every way out, and ``stop`` (set by
``monitor watch`` on SIGTERM) is honoured between steps.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ModelyardError, NotFound, RetrainStopped

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from modelyard.flavors import LoadedModel
    from modelyard.monitor.policy import MonitorConfig, Policy
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

logger = logging.getLogger("modelyard.monitor")

PROMOTED = "promoted"
CHAMPION_KEPT = "champion_kept"
FAILED = "failed"
BUSY = "busy"
INTERRUPTED = "interrupted"

NODE_REPORT = "monitor_report"
NODE_RUN = "run"
NODE_MODEL = "model_version"
NODE_DEPLOYMENT = "deployment"

LabelledData = tuple["pd.DataFrame", "np.ndarray[Any, Any]"]
# (workspace, deployment, champion) -> recent labelled rows, or None when there are none
EvaluationSource = Callable[["Workspace", "Deployment", "ModelVersion"], "LabelledData | None"]
# (workspace, deployment, new version) -> rolls the version out, raising on failure
Rollout = Callable[["Workspace", "Deployment", "ModelVersion"], None]


@dataclass(frozen=True)
class RetrainOutcome:
    status: str  # promoted | champion_kept | failed | busy | interrupted
    reason: str
    champion: str | None = None
    challenger: str | None = None  # the new version's ref once registered, else run:<id>
    pipeline_run: str | None = None
    metric: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "champion": self.champion,
            "challenger": self.challenger,
            "pipeline_run": self.pipeline_run,
            "metric": self.metric,
            "scores": dict(self.scores),
            "samples": self.samples,
        }


@dataclass
class RetrainPlan:
    """What a retrain needs besides the policy: injectable so tests and embedders can swap the
    pipeline, the evaluation data and the rollout for their own."""

    pipeline: Path | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    evaluation: EvaluationSource | None = None
    rollout: Rollout | None = None
    runner: str | None = None  # pipeline runner name (default: the pipeline's own default)
    stop: threading.Event | None = None


def retrain(
    ws: Workspace,
    deployment: str,
    policy: Policy,
    config: MonitorConfig,
    *,
    holder: str,
    report_id: int | None = None,
    plan: RetrainPlan | None = None,
) -> RetrainOutcome:
    """Run one retrain for ``deployment`` under the model's lease and record the decision."""
    plan = plan or RetrainPlan()
    dep = ws.store.deployments.get(deployment)
    current = dep.current
    if current is None:
        return RetrainOutcome(FAILED, f"deployment {deployment!r} serves no model yet")
    lease = f"retrain:{current.model_name}"
    repo = ws.store.monitoring
    if not repo.acquire_lease(lease, holder, config.lease_s):
        outcome = RetrainOutcome(
            BUSY, f"another monitor is retraining {current.model_name}", current.model_ref
        )
        repo.add_action(
            report_id=report_id,
            deployment=deployment,
            policy=policy.name,
            action="retrain",
            status="skipped",
            reason=outcome.reason,
            finished=True,
        )
        return outcome
    action = repo.add_action(
        report_id=report_id,
        deployment=deployment,
        policy=policy.name,
        action="retrain",
        status="started",
        detail={"champion": current.model_ref, "holder": holder},
    )
    try:
        job = _Retrain(ws, dep, policy, config, plan, holder, lease, report_id)
        try:
            outcome = job.run()
        except RetrainStopped as exc:
            outcome = job.outcome(INTERRUPTED, exc.message)
        except Exception as exc:
            logger.exception("retrain of %s failed", deployment)
            message = exc.message if isinstance(exc, ModelyardError) else repr(exc)
            outcome = job.outcome(FAILED, f"{job.stage} failed: {message}; the champion serves on")
        status = outcome.status if outcome.status != INTERRUPTED else FAILED
        repo.finish_action(action.id, status, reason=outcome.reason, detail=outcome.to_dict())
        return outcome
    finally:
        repo.release_lease(lease, holder)


class _Retrain:
    def __init__(
        self,
        ws: Workspace,
        dep: Deployment,
        policy: Policy,
        config: MonitorConfig,
        plan: RetrainPlan,
        holder: str,
        lease: str,
        report_id: int | None,
    ) -> None:
        self.ws, self.dep, self.policy, self.config, self.plan = ws, dep, policy, config, plan
        self.holder, self.lease, self.report_id = holder, lease, report_id
        self.stage = "starting"
        self.champion: str | None = dep.current.model_ref if dep.current else None
        self.challenger: str | None = None
        self.pipeline_run: str | None = None
        self.scores: dict[str, float] = {}
        self.samples = 0

    def outcome(self, status: str, reason: str) -> RetrainOutcome:
        return RetrainOutcome(
            status,
            reason,
            self.champion,
            self.challenger,
            self.pipeline_run,
            self.policy.metric,
            dict(self.scores),
            self.samples,
        )

    def step(self, stage: str) -> None:
        """Between two steps: honour a stop request and keep the lease alive."""
        if self.plan.stop is not None and self.plan.stop.is_set():
            raise RetrainStopped(f"stopped before {stage}; nothing was changed")
        if not self.ws.store.monitoring.renew_lease(self.lease, self.holder, self.config.lease_s):
            # It expired and another monitor may have taken over: going on would mean two
            # retrains rolling out the same deployment.
            raise RetrainStopped(f"lost the retrain lease {self.lease!r} before {stage}")
        self.stage = stage

    def run(self) -> RetrainOutcome:
        from modelyard.models import resolve

        assert self.champion is not None
        champion = resolve(self.champion, self.ws)
        self.step("the pipeline")
        logged_run, digest = self.run_pipeline(champion)
        self.step("evaluation")
        if self.plan.evaluation is not None:
            data = self.plan.evaluation(self.ws, self.dep, champion)
        else:  # the windows the policy judged: the traffic the new model must serve well
            recent = self.config.window_requests * self.policy.windows_needed
            data = recent_labelled(self.ws, self.dep, champion, requests=recent)
        if data is None or len(data[1]) == 0:
            return self.outcome(
                CHAMPION_KEPT, "no recent labelled data to compare on; the champion stays"
            )
        frame, labels = data
        self.samples = len(labels)
        metric = self.policy.metric
        champ_model = _load_version(self.ws, champion)
        scratch = self.ws.state_dir / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch, prefix="challenger-") as tmp:
            chall_model = _load_digest(self.ws, digest, Path(tmp) / "model")
            self.scores = {
                "champion": score(champ_model, frame, labels, metric),
                "challenger": score(chall_model, frame, labels, metric),
            }
        if not self.wins():
            return self.outcome(
                CHAMPION_KEPT,
                f"challenger {metric} {self.scores['challenger']:.4f} does not beat champion "
                f"{self.scores['champion']:.4f} by the margin {self.policy.margin} on "
                f"{self.samples} recent labelled rows",
            )
        return self.promote(champion, logged_run)

    def run_pipeline(self, champion: ModelVersion) -> tuple[str, str]:
        from modelyard.models.log import logged_models
        from modelyard.pipeline.run import make_runner, run_pipeline

        path = self.plan.pipeline
        if path is None and self.policy.pipeline is not None:
            path = self.ws.root / self.policy.pipeline
        params = {**self.policy.params, **self.plan.params}
        if path is None:
            path, recorded = pipeline_of(self.ws, champion)
            params = {**recorded, **params}
        runner_name = self.plan.runner or self.policy.runner
        runner = make_runner(runner_name, self.ws) if runner_name else None
        result = run_pipeline(path, params=params, workspace=self.ws, runner=runner)
        self.pipeline_run = result.id
        if self.report_id is not None:
            self.ws.store.lineage.add(
                NODE_REPORT, str(self.report_id), NODE_RUN, result.id, "triggered"
            )
        if result.status != "finished":
            raise _Failed(f"pipeline run {result.id} failed: {result.error}")
        for step in reversed(result.steps):
            if step.run_id is None:
                continue
            models = logged_models(self.ws, step.run_id)
            if models:
                self.challenger = f"run:{step.run_id}/{models[-1].name}"
                return step.run_id, models[-1].digest
        raise _Failed(f"pipeline run {result.id} logged no model (use models.log_model in a step)")

    def wins(self) -> bool:
        champ, chall = self.scores["champion"], self.scores["challenger"]
        if self.policy.lower_is_better:
            return chall < champ - self.policy.margin
        return chall > champ + self.policy.margin

    def promote(self, champion: ModelVersion, logged_run: str) -> RetrainOutcome:
        from modelyard.models import check_promotion, promote, register

        self.step("registration")
        won = (
            f"{self.policy.metric} {self.scores['challenger']:.4f} vs {self.scores['champion']:.4f}"
        )
        version = register(
            logged_run,
            champion.name,
            description=f"retrained by monitor policy {self.policy.name!r}: {won}",
            tags={"modelyard.monitor.report": str(self.report_id or "")},
            workspace=self.ws,
        )
        self.challenger = version.ref
        self.step("the promotion gate")
        report = check_promotion(version.ref, "production", workspace=self.ws)
        if not report.passed:
            return self.outcome(
                CHAMPION_KEPT,
                f"{version.ref} beat the champion ({won}) but the production gate refused: "
                + "; ".join(report.failed_texts()),
            )
        self.step("the image build")
        version = self.build_image(version)
        self.step("the rollout")
        if self.policy.rollout and self.plan.rollout is None:
            kept = self.progressive(version, won)
            if kept is not None:
                return kept
        else:
            (self.plan.rollout or default_rollout)(self.ws, self.dep, version)
        self.ws.store.lineage.add(
            NODE_MODEL, version.ref, NODE_DEPLOYMENT, self.dep.name, "deployed_as"
        )
        self.stage = "moving the production alias"
        try:
            promote(
                version.ref,
                "production",
                reason=f"monitor report {self.report_id}: {won} on {self.samples} labelled rows",
                workspace=self.ws,
            )
        except BaseException:
            # The gate passed a moment ago; if the alias still cannot move, serve what the
            # alias names again so the deployment and the registry agree.
            logger.error("promoting %s failed; rolling %s back", version.ref, champion.ref)
            (self.plan.rollout or default_rollout)(self.ws, self.dep, champion)
            raise
        return self.outcome(
            PROMOTED,
            f"{version.ref} beat {champion.ref} ({won}, margin {self.policy.margin}) on "
            f"{self.samples} recent labelled rows; rolled out and promoted to production",
        )

    def progressive(self, version: ModelVersion, won: str) -> RetrainOutcome | None:
        """The policy's shadow and/or canary phases on live traffic (see
        :mod:`modelyard.monitor.progressive`); an outcome when the challenger failed them."""
        from modelyard.deploy.service import spec_like
        from modelyard.errors import RolloutAborted
        from modelyard.monitor import progressive as pg
        from modelyard.monitor.analysis import thresholds_for

        p = self.policy
        steps: list[pg.Step] = []
        if "shadow" in p.rollout:
            steps.append(pg.shadow_step(p.shadow_sample, p.shadow_for_s, p.shadow_requests))
        if "canary" in p.rollout:
            steps += pg.canary_steps(p.canary_steps, p.canary_interval_s)
        spec = spec_like(self.ws.store.deployments.get(self.dep.name), version.ref,
                         strategy=p.rollout[-1])  # fmt: skip
        plan = pg.RolloutPlan(tuple(steps), thresholds_for(self.ws), p.sticky, alias=None)
        try:
            pg.rollout(spec, plan, workspace=self.ws, stop=self.plan.stop, policy=p.name,
                       report_id=self.report_id)  # fmt: skip
        except RolloutAborted as exc:
            return self.outcome(
                CHAMPION_KEPT,
                f"{version.ref} beat the champion offline ({won}) but failed on live traffic: "
                f"{exc.message}",
            )
        return None

    def build_image(self, version: ModelVersion) -> ModelVersion:
        """Container targets serve images: build one (the packaging stage records it and its
        lineage arrow) and push it when the deployment names a registry."""
        from modelyard.deploy.registry import target_of

        if not target_of(self.dep).uses_images:
            return version
        from modelyard.packaging import build_model_image, push_model_image

        image = build_model_image(version.ref, workspace=self.ws)
        registry = (self.dep.config or {}).get("registry")
        if registry:
            push_model_image(version.ref, str(registry), workspace=self.ws)
        return image.version


class _Failed(ModelyardError):
    pass


def pipeline_of(ws: Workspace, version: ModelVersion) -> tuple[Path, dict[str, Any]]:
    """The pipeline file and parameters of the run that produced ``version``: the pipeline run
    containing the step run the version was registered from."""
    if version.run_id is None:
        raise NotFound(f"{version.ref} was not produced by a run; give the pipeline explicitly")
    for edge in ws.store.lineage.edges_to(NODE_RUN, version.run_id):
        if edge.source_type == NODE_RUN and edge.relation == "contains":
            try:
                run = ws.store.pipelines.get(edge.source_id)
            except NotFound:
                continue
            return Path(run.pipeline_file), dict(run.params)
    try:
        run = ws.store.pipelines.get(version.run_id)
        return Path(run.pipeline_file), dict(run.params)
    except (NotFound, ModelyardError):
        pass
    raise NotFound(f"{version.ref} was not produced by a pipeline; give the pipeline explicitly")


def recent_labelled(
    ws: Workspace, dep: Deployment, champion: ModelVersion, requests: int = 1000
) -> LabelledData | None:
    """The newest ``requests`` logged predictions of the model that HAVE a feedback label, as
    (inputs frame, labels): the same rows for champion and challenger. Unlabelled traffic
    (however recent) is skipped, and only one window of matching rows is held at a time."""
    from collections import deque

    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelyard.monitor.windows import (
        FEEDBACK,
        PREDICTIONS,
        Window,
        iter_batches,
        prediction_log_dir,
    )

    log_dir = prediction_log_dir(dep)
    if log_dir is None:
        return None
    labels: dict[str, Any] = {}
    for batch in iter_batches(log_dir, FEEDBACK):
        for rid, raw in zip(
            batch.column("request_id").to_pylist(), batch.column("label").to_pylist(), strict=True
        ):
            labels[str(rid)] = json.loads(raw)
    if not labels:
        return None
    wanted = pa.array(list(labels), pa.string())
    kept: deque[Any] = deque()
    held = 0
    for batch in iter_batches(log_dir, PREDICTIONS):
        hit = batch.filter(pc.is_in(batch.column("request_id"), value_set=wanted))
        if not hit.num_rows:
            continue
        kept.append(hit)
        held += hit.num_rows
        while held - kept[0].num_rows >= requests:
            held -= kept.popleft().num_rows
    if not kept:
        return None
    table = pa.Table.from_batches(list(kept))
    if table.num_rows > requests:
        table = table.slice(table.num_rows - requests)
    window = Window(table)
    names = _input_names(champion)
    inputs = window.inputs(names)
    keep: list[int] = []
    y: list[Any] = []
    offset = 0
    for rid, rows in zip(window.request_ids, table.column("rows").to_pylist(), strict=True):
        values = labels[rid] if isinstance(labels[rid], list) else [labels[rid]]
        if len(values) == rows:  # a label per row, or the request is not comparable
            keep.extend(range(offset, offset + rows))
            y.extend(values)
        offset += int(rows)
    if not keep:
        return None
    frame = pd.DataFrame({k: v[keep] for k, v in inputs.items()})
    if names:
        frame = frame[[n for n in names if n in frame.columns]]
    return frame.infer_objects(), np.asarray(y)


def score(
    model: LoadedModel, frame: pd.DataFrame, labels: np.ndarray[Any, Any], metric: str
) -> float:
    """``metric`` of ``model`` on the labelled rows (from the model's own predictions)."""
    import numpy as np

    raw = model.predict(frame)
    predicted = np.asarray(next(iter(raw.values())) if isinstance(raw, dict) else raw).ravel()
    if metric in {"mae", "rmse", "r2"}:
        truth = labels.astype(float)
        err = predicted.astype(float) - truth
        if metric == "mae":
            return float(np.mean(np.abs(err)))
        if metric == "rmse":
            return float(np.sqrt(np.mean(err**2)))
        total = float(np.sum((truth - truth.mean()) ** 2)) or 1.0
        return 1.0 - float(np.sum(err**2)) / total
    truth = labels.astype(str)
    guess = predicted.astype(str)
    if metric == "f1":
        from sklearn.metrics import f1_score

        positive = "1" if "1" in set(truth) else sorted(set(truth))[-1]
        return float(f1_score(truth, guess, pos_label=positive, zero_division=0))
    return float(np.mean(truth == guess))


def default_rollout(ws: Workspace, dep: Deployment, version: ModelVersion) -> None:
    """Roll ``version`` out the way ``dep`` is deployed (the deploy stage's ``redeploy``, which
    ``deploy rollback`` uses too): it switches without dropping requests and leaves the old
    version serving when the new one never becomes ready (it raises then)."""
    from modelyard.deploy import redeploy

    redeploy(dep.name, version.ref, workspace=ws)


def _input_names(version: ModelVersion) -> list[str] | None:
    signature = version.signature or {}
    inputs = signature.get("inputs") if isinstance(signature, dict) else None
    if isinstance(inputs, list):
        names = [str(i.get("name")) for i in inputs if isinstance(i, dict) and i.get("name")]
        return names or None
    return None


def _load_version(ws: Workspace, version: ModelVersion) -> LoadedModel:
    from modelyard.models import load

    return load(version.ref, ws)


def _load_digest(ws: Workspace, digest: str, folder: Path) -> LoadedModel:
    """A logged (not yet registered) model, exported into ``folder``; never unpickled."""
    from modelyard.flavors import load_model

    ws.artifacts.export_dir(digest, folder)
    return load_model(folder, allow_pickle=False)
