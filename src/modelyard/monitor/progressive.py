"""Progressive rollouts: a candidate version earns the traffic step by step, on live requests.

    start the candidate beside the serving version (no traffic)
      ─► step 1 … n: share the traffic (shadow: copy a sample; canary: answer a share),
                     wait the step's interval, analyse candidate vs serving version on that
                     window (:mod:`modelyard.monitor.analysis`)
           a check fails, the candidate exits or restarts, or a stop ─► abort: all traffic back
                     to the serving version, candidate stopped, why recorded, RolloutAborted
      ─► every step passed: roll the candidate out (``replace``: a revision like any other),
         stop the candidate, move the alias through its promotion gate

Hard faults (the candidate exited or restarted) are looked for every ``poll_s`` within a step,
so they abort at once; the analysis runs at the end of each step, so a failing candidate is
rolled back within one interval. The whole rollout holds the deployment's rollout lease.

Each rollout is recorded as a monitor action (``action="rollout"``) whose detail holds every
step's analysis table; lineage links the candidate version to it
(``model_version -rolled_out_in-> rollout -step-> rollout_step``), so ``modelyard lineage
NAME@V`` shows the shadow analysis and every canary step.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter, RolloutAborted
from modelyard.monitor.analysis import Analysis, Counts, Thresholds, analyse, scrape_counts

if TYPE_CHECKING:
    from modelyard.deploy.spec import DeploySpec
    from modelyard.store.deploy_entities import Deployment
    from modelyard.workspace import Workspace

logger = logging.getLogger("modelyard.monitor.progressive")

SHADOW = "shadow"
CANARY = "canary"
PROMOTED = "promoted"
ABORTED = "aborted"
RUNNING = "running"
ACTION = "rollout"
NODE_ROLLOUT = "rollout"
NODE_STEP = "rollout_step"


@dataclass(frozen=True)
class Step:
    """One step: ``percent`` of the traffic copied (shadow) or answered (canary) for
    ``duration_s``; a shadow step with ``requests`` ends once the candidate answered that many
    (``duration_s`` is then its longest)."""

    mode: str
    percent: float
    duration_s: float
    requests: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in (SHADOW, CANARY):
            raise InvalidParameter(f"a rollout step is shadow or canary, not {self.mode!r}")
        if not 0 < self.percent <= 100:
            raise InvalidParameter(
                f"a step's share is above 0 and at most 100 %, not {self.percent}"
            )
        if self.duration_s <= 0:
            raise InvalidParameter("a step's interval must be positive")
        if self.requests is not None and self.requests < 1:
            raise InvalidParameter("a step's request count must be at least 1")

    def describe(self) -> str:
        what = "copied to" if self.mode == SHADOW else "answered by"
        until = f"{self.requests} requests or " if self.requests else ""
        length = f"{until}{self.duration_s:g} s"
        return f"{self.mode} {self.percent:g} % ({what} the candidate) for {length}"


def shadow_step(sample: float, duration_s: float, requests: int | None = None) -> Step:
    """``sample`` (0-1] of the requests copied to the candidate."""
    if not 0 < sample <= 1:
        raise InvalidParameter(f"--sample is a share above 0 and at most 1, not {sample}")
    return Step(SHADOW, sample * 100, duration_s, requests)


def canary_steps(percents: Sequence[float], interval_s: float) -> tuple[Step, ...]:
    """One canary step per share (``5, 25, 50, 100``), each ``interval_s`` long; the shares
    must grow."""
    if not percents:
        raise InvalidParameter("a canary needs at least one step, like --steps 5,25,50,100")
    if any(b <= a for a, b in zip(percents, percents[1:], strict=False)):
        raise InvalidParameter(f"canary steps must grow, not {list(percents)}")
    return tuple(Step(CANARY, float(p), interval_s) for p in percents)


def parse_steps(text: str) -> list[float]:
    """``"5,25,50,100"`` as shares."""
    try:
        return [float(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise InvalidParameter(
            f"--steps is a list of percentages like 5,25,50,100, not {text!r}"
        ) from None


@dataclass(frozen=True)
class RolloutPlan:
    steps: tuple[Step, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    sticky: str | None = None
    #: moved to the candidate (through its gate) once it serves; None: no alias moves
    alias: str | None = None
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.steps:
            raise InvalidParameter("a progressive rollout needs at least one step")
        if self.sticky is not None:  # refused before a candidate starts, not at its first step
            from modelyard.deploy.target import TrafficSplit

            TrafficSplit(CANARY, 100.0, self.sticky)


@dataclass(frozen=True)
class StepRecord:
    index: int
    step: Step
    analysis: Analysis

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "mode": self.step.mode,
            "percent": self.step.percent,
            "duration_s": self.step.duration_s,
            "requests": self.step.requests,
            "analysis": self.analysis.to_dict(),
        }


@dataclass(frozen=True)
class RolloutResult:
    status: str  # promoted | aborted
    reason: str
    candidate: str
    primary: str
    action_id: int
    steps: tuple[StepRecord, ...]
    deployment: Deployment | None = None


def rollout(
    spec: DeploySpec,
    plan: RolloutPlan,
    *,
    workspace: Workspace | None = None,
    stop: threading.Event | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    policy: str = "deploy",
    report_id: int | None = None,
) -> RolloutResult:
    """Roll ``spec.ref`` out on the running deployment ``spec.name`` through ``plan``'s steps
    (see the module docstring). Returns the promoted result; raises
    :class:`~modelyard.errors.RolloutAborted` (carrying the result) when a step failed, and
    whatever went wrong otherwise, with the candidate stopped either way."""
    from modelyard.deploy import service
    from modelyard.models import resolve
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(spec.name)
    if dep.current is None:
        raise InvalidParameter(f"deployment {spec.name!r} serves nothing yet; deploy it first")
    candidate = resolve(spec.ref, ws)
    primary_ref = dep.current.model_ref
    if plan.alias:
        _check_gate(ws, candidate.ref, plan.alias)
    total = sum(s.duration_s for s in plan.steps) + 2 * spec.timeout_s + 600
    repo = ws.store.monitoring
    action = repo.add_action(
        report_id=report_id,
        deployment=spec.name,
        policy=policy,
        action=ACTION,
        status=RUNNING,
        detail={
            "candidate": candidate.ref,
            "primary": primary_ref,
            "strategy": "+".join(dict.fromkeys(s.mode for s in plan.steps)),
            "plan": [s.describe() for s in plan.steps],
            "sticky": plan.sticky,
            "thresholds": plan.thresholds.to_dict(),
            "steps": [],
        },
    )
    ws.store.lineage.add("model_version", candidate.ref, NODE_ROLLOUT, str(action.id),
                         "rolled_out_in")  # fmt: skip
    records: list[StepRecord] = []

    def finish(status: str, reason: str, deployment: Deployment | None = None) -> RolloutResult:
        repo.finish_action(action.id, status, reason=reason,
                           detail={"steps": [r.to_dict() for r in records]})  # fmt: skip
        return RolloutResult(status, reason, candidate.ref, primary_ref, action.id,
                             tuple(records), deployment)  # fmt: skip

    with service.exclusive(ws, spec.name, ttl_s=total) as holder:
        try:
            service.start_candidate(ws, spec)
            for index, step in enumerate(plan.steps, 1):
                record = _run_step(ws, spec.name, index, step, plan, candidate.version,
                                   dep.current.model_version, stop)  # fmt: skip
                records.append(record)
                ws.store.lineage.add(NODE_ROLLOUT, str(action.id), NODE_STEP,
                                     f"{action.id}.{index}", "step")  # fmt: skip
                repo.finish_action(action.id, RUNNING,
                                   detail={"steps": [r.to_dict() for r in records]})  # fmt: skip
                if on_step is not None:
                    on_step(record)
                if not record.analysis.passed:
                    raise _Abort(
                        f"step {index} ({step.describe()}) failed: "
                        + "; ".join(record.analysis.failed_texts())
                    )
                service.renew_lease(ws, spec.name, holder, total)
            promoted = service.record_rollout(
                ws,
                service.spec_like(
                    ws.store.deployments.get(spec.name),
                    candidate.ref,
                    spec.timeout_s,
                    _client(spec),
                ),  # fmt: skip
            )
        except _Abort as exc:
            why = f"{exc.message}; {primary_ref} keeps all the traffic"
            service.stop_candidate(ws, spec.name, f"aborted: {why}")
            result = finish(ABORTED, why)
            raise RolloutAborted(why, result) from None
        except BaseException as exc:
            why = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            try:
                service.stop_candidate(ws, spec.name, f"stopped: {why}")
            finally:
                finish(ABORTED, f"{why}; {primary_ref} keeps all the traffic")
            raise
        service.stop_candidate(ws, spec.name, f"{candidate.ref} passed every step and serves")
    reason = f"{candidate.ref} passed {len(records)} step(s) and serves {spec.name}"
    if plan.alias:
        from modelyard.models import promote

        promote(candidate.ref, plan.alias, reason=f"{spec.strategy} rollout {action.id}: "
                f"every step passed", workspace=ws)  # fmt: skip
        reason += f"; {plan.alias} -> {candidate.ref}"
    return finish(PROMOTED, reason, promoted)


class _Abort(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _client(spec: DeploySpec) -> object | None:
    """The platform client the spec's options carry (a DockerEngine, a KubeApi), if any."""
    options = spec.options
    if options is None:
        return None
    return next((getattr(options, n) for n in options.CLIENTS if getattr(options, n, None)), None)


def _check_gate(ws: Workspace, ref: str, alias: str) -> None:
    from modelyard.models import check_promotion

    report = check_promotion(ref, alias, workspace=ws)
    if not report.passed:
        raise InvalidParameter(
            f"{ref} could never become {alias}: its gate refuses it ("
            + "; ".join(report.failed_texts())
            + "); nothing was started"
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _run_step(
    ws: Workspace,
    name: str,
    index: int,
    step: Step,
    plan: RolloutPlan,
    candidate_version: int,
    primary_version: int,
    stop: threading.Event | None,
) -> StepRecord:
    from modelyard.deploy import service
    from modelyard.deploy.registry import target_of
    from modelyard.deploy.target import TrafficSplit
    from modelyard.monitor.windows import prediction_log_dir

    dep = service.set_split(ws, name, TrafficSplit(step.mode, step.percent, plan.sticky))
    target = target_of(dep)
    log_dir = prediction_log_dir(dep)
    if log_dir is None:
        raise _Abort(f"deployment {name!r} records no prediction log to analyse")

    def counts() -> Counts:
        return scrape_counts(service.replica_urls(ws, dep), target.candidate_urls(ws, dep))

    since = _now()
    before = counts()
    started = time.monotonic()
    fault: str | None = None
    while True:
        if stop is not None and stop.wait(0):
            raise _Abort(f"stopped during step {index}")
        fault = target.candidate_fault(ws, dep)
        if fault is not None:
            break
        elapsed = time.monotonic() - started
        if elapsed >= step.duration_s:
            break
        if step.requests is not None and _answered(log_dir, since, step.mode) >= step.requests:
            break
        wait = min(plan.poll_s, step.duration_s - elapsed)
        if stop is not None:
            stop.wait(wait)
        else:
            time.sleep(wait)
    until = _now()
    delta = counts().since(before)
    analysis = analyse(
        log_dir,
        mode=step.mode,
        primary_version=str(primary_version),
        candidate_version=str(candidate_version),
        since=since,
        until=until,
        counts=delta,
        thresholds=plan.thresholds,
        fault=fault,
    )
    return StepRecord(index, step, analysis)


def _answered(log_dir: Any, since: dt.datetime, mode: str) -> int:
    import pyarrow.compute as pc

    from modelyard.monitor.analysis import read_window

    table = read_window(log_dir, since, _now() + dt.timedelta(seconds=1))
    if table is None:
        return 0
    return int(pc.sum(pc.equal(table.column("variant"), mode)).as_py() or 0)


def rollouts(ws: Workspace, deployment: str, limit: int = 10) -> list[dict[str, Any]]:
    """The latest progressive rollouts of ``deployment``, newest first: each a dict with
    ``id``, ``status``, ``reason``, ``started_at``, ``ended_at`` and the recorded detail
    (candidate, primary, plan, thresholds, steps with their analysis)."""
    out = []
    for a in ws.store.monitoring.actions(deployment, action=ACTION, limit=limit):
        out.append({"id": a.id, "status": a.status, "reason": a.reason,
                    "started_at": a.started_at, "ended_at": a.ended_at, **a.detail})  # fmt: skip
    return out


def step_analyses(detail: dict[str, Any]) -> list[tuple[dict[str, Any], Analysis]]:
    """``(step, analysis)`` of a recorded rollout's steps."""
    return [(s, Analysis.from_dict(s["analysis"])) for s in detail.get("steps", [])]
