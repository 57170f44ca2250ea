"""Aliases (``churn@production``): moving one is a promotion, checked by its gates and
recorded in the alias history with who, when, from which version, to which, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.errors import PromotionRefused
from modelyard.models._common import actor, parse_model_ref, parse_version_ref
from modelyard.models.gates import GateReport, evaluate
from modelyard.refs import validate_alias, validate_name

if TYPE_CHECKING:
    from modelyard.store.models_entities import AliasMove, Approval, ModelVersion
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class Promotion:
    move: AliasMove
    version: ModelVersion
    report: GateReport


def promote(
    ref: str,
    alias: str,
    *,
    force: bool = False,
    reason: str | None = None,
    workspace: Workspace | None = None,
) -> Promotion:
    """Point ``alias`` at the version ``ref`` names, if every gate guarding the alias passes.

    ``force`` moves it anyway; the move is then recorded as forced with the checks that
    failed. Raises :class:`PromotionRefused` (exit 1) otherwise, and nothing changes.
    """
    from modelyard.models.resolve import resolve
    from modelyard.workspace import resolve as resolve_workspace

    validate_alias(alias)
    ws = resolve_workspace(workspace)
    version = resolve(ref, ws)
    report = evaluate(ws, version, alias)
    if not report.passed and not force:
        raise PromotionRefused(report)
    failed = report.failed_texts()
    # ``forced`` passes the intent on: a team server evaluates its own gates again (its config
    # may hold checks this client's does not), and only an admin's force overrides them.
    move = ws.store.models.move_alias(
        version.name,
        alias,
        version.version,
        actor=actor(),
        reason=reason,
        forced=force,
        failed_checks=failed or None,
    )
    return Promotion(move, version, report)


def remove_alias(
    name: str, alias: str, *, reason: str | None = None, workspace: Workspace | None = None
) -> AliasMove:
    """Drop ``alias`` (recorded in the history as a move to no version)."""
    from modelyard.workspace import resolve as resolve_workspace

    validate_name(name, "model name")
    validate_alias(alias)
    ws = resolve_workspace(workspace)
    return ws.store.models.move_alias(name, alias, None, actor=actor(), reason=reason)


def alias_history(
    name: str, alias: str | None = None, *, workspace: Workspace | None = None
) -> list[AliasMove]:
    from modelyard.workspace import resolve as resolve_workspace

    validate_name(name, "model name")
    if alias is not None:
        validate_alias(alias)
    return resolve_workspace(workspace).store.models.alias_history(name, alias)


def approve(
    ref: str, *, comment: str | None = None, workspace: Workspace | None = None
) -> Approval:
    """Record that the current user approves version ``ref`` (``name@N``) for promotion."""
    from modelyard.workspace import resolve as resolve_workspace

    name, version = parse_version_ref(ref)
    ws = resolve_workspace(workspace)
    return ws.store.models.add_approval(name, version, actor=actor(), comment=comment)


def check_promotion(ref: str, alias: str, *, workspace: Workspace | None = None) -> GateReport:
    """What :func:`promote` would decide, without moving anything."""
    from modelyard.models.resolve import resolve
    from modelyard.workspace import resolve as resolve_workspace

    parse_model_ref(ref)
    validate_alias(alias)
    ws = resolve_workspace(workspace)
    return evaluate(ws, resolve(ref, ws), alias)
