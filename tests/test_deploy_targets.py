"""Deploy targets: one protocol, one registry. A target added to the registry is deployed,
inspected, rolled back and stopped by the same code as the built-in ones, and no module outside
the registry picks behaviour by comparing target names."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import modelyard
from modelyard import deploy
from modelyard.deploy import registry
from modelyard.deploy.target import (
    DeployTarget,
    Rollout,
    RolloutRequest,
    TargetDefaults,
    TargetOptions,
)
from modelyard.errors import InvalidParameter
from modelyard.store.deploy_entities import Deployment
from modelyard.store.models_entities import ModelVersion
from modelyard.workspace import Workspace

SRC = Path(modelyard.__file__).parent
NAMES = {"LOCAL", "DOCKER", "KUBERNETES", "TARGETS"}
# `modelyard predict --target local|kubernetes` picks where a batch job runs (here, or a
# Kubernetes Job rendered for kubectl), not a deploy target.
ELSEWHERE = {"cli/batch.py"}


def test_no_target_name_is_compared_outside_the_registry() -> None:
    """``x.target == "docker"``, ``target in (LOCAL, DOCKER)``… anywhere in modelyard fails, with
    the file and line. Comparing one deployment's target with another's is no name test."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            # A name is a target name when the other side is a target: pipeline runners and
            # batch engines are called "local" and "docker" too.
            name = any(
                _last(s) in NAMES or (isinstance(s, ast.Constant) and s.value in registry.TARGETS)
                for s in sides
            )
            about_target = any(_last(s) in {"target", "target_name"} for s in sides)
            where = str(path.relative_to(SRC))
            if name and about_target and where not in ELSEWHERE:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def _last(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else None


def test_every_registered_target_is_complete() -> None:
    members = [n for n in dir(DeployTarget) if not n.startswith("_")]
    members += list(DeployTarget.__annotations__)
    for name, target in registry.TARGETS.items():
        assert target.name == name
        assert {m for m in members if not hasattr(target, m)} == set(), name
        assert issubclass(target.options_type, TargetOptions)
        assert target.options_type() == target.options_type.from_settings({})
    assert tuple(registry.TARGETS) == deploy.TARGETS
    from modelyard.cli.deploy import run

    choices = next(p for p in run.params if p.name == "target").type.choices  # type: ignore[attr-defined]
    assert tuple(choices) == tuple(registry.TARGETS)


@dataclass(frozen=True)
class ToyOptions(TargetOptions):
    colour: str = "red"


class ToyTarget(TargetDefaults):
    """A target that serves nothing but remembers what it was asked: the whole of a new
    target is this class and its registry entry."""

    name = "toy"
    options_type: type[TargetOptions] = ToyOptions
    uses_images = False
    publishes_port = False
    default_replicas = 1
    default_timeout_s = 5.0
    replica_network = None

    def __init__(self) -> None:
        self.rolled: list[tuple[str, Any]] = []
        self.running: set[str] = set()

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        return None, None

    def rollout(self, request: RolloutRequest) -> Rollout:
        self.rolled.append((request.version.ref, request.spec.options))
        self.running.add(request.spec.name)
        return Rollout({"served_by": "toy"})

    def is_running(self, ws: Workspace, dep: Deployment) -> bool:
        return dep.name in self.running

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return []

    def stop(self, ws: Workspace, dep: Deployment) -> None:
        self.running.discard(dep.name)

    def logs(self, ws: Workspace, dep: Deployment, lines: int) -> str:
        return f"{dep.name}: {lines} lines"


def test_a_new_target_is_one_class_and_one_registry_entry(
    sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from _deploy_helpers import register_churn

    pytest.importorskip("sklearn")
    ws = sqlite_workspace
    register_churn(ws, 2)
    toy = ToyTarget()
    checked: DeployTarget = toy  # the type checker holds it to the protocol
    monkeypatch.setitem(registry.TARGETS, "toy", checked)

    spec = deploy.DeploySpec("churn@1", "api", target="toy", options=ToyOptions("blue"))
    dep = deploy.deploy(spec, workspace=ws)
    assert (dep.target, dep.port, dep.current and dep.current.model_ref) == ("toy", None, "churn@1")
    assert dep.config == {"colour": "blue", "served_by": "toy", "auth_url": None}
    deploy.deploy(deploy.DeploySpec("churn@2", "api", target="toy"), workspace=ws)
    # A rollback rolls the earlier version out with the options read back from the record.
    dep = deploy.rollback("api", workspace=ws)
    assert toy.rolled == [("churn@1", ToyOptions("blue")), ("churn@2", None),
                          ("churn@1", ToyOptions("red"))]  # fmt: skip
    assert dep.current is not None
    assert dep.current.model_ref == "churn@1"
    assert deploy.logs("api", lines=3, workspace=ws) == "api: 3 lines"
    assert deploy.status("api", workspace=ws).ready_replicas == 0
    assert deploy.plan(spec, workspace=ws) is None
    assert deploy.stop("api", workspace=ws).status == "stopped"
    assert toy.running == set()

    with pytest.raises(InvalidParameter, match="the toy target takes ToyOptions, not LocalOptions"):
        deploy.DeploySpec("churn@1", "api", target="toy", options=deploy.LocalOptions())
    with pytest.raises(InvalidParameter, match="cannot roll out with strategy 'canary'"):
        deploy.DeploySpec("churn@1", "api", target="toy", strategy="canary")
    with pytest.raises(InvalidParameter, match="unknown target 'nope'; choose one of local, "):
        deploy.DeploySpec("churn@1", "api", target="nope")
