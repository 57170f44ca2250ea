"""``modelyard models``: register, alias, promote through gates, inspect and curate versions."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from modelyard.cli._common import console, pass_workspace
from modelyard.errors import InvalidParameter
from modelyard.workspace import Workspace

if TYPE_CHECKING:
    from modelyard.models import GateReport, ModelVersion


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidParameter(f"{what} {item!r} must look like KEY=VALUE")
        out[key.strip()] = value
    return out


def _short(digest: str) -> str:
    from modelyard.hashing import short

    return short(digest)


@click.group()
def models() -> None:
    """The model registry: versions, aliases, promotion gates and approvals."""


@models.command()
@click.argument("source")
@click.option("--name", required=True, help="Registered model name, e.g. churn.")
@click.option(
    "--artifact", default="model", show_default=True, help="The run's logged model to take."
)
@click.option("--run", "run_id", help="Link a model folder to the run that produced it.")
@click.option("--description", help="What this version is.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Tag (repeatable).")
@click.option(
    "--trust-pickle",
    "--trust-code",
    "trust_pickle",
    is_flag=True,
    help="Trust this version's own code to run on load (a pickle, or a python model's source); "
    "recorded with who, when and the content's digest. An admin act on a team server.",
)
@pass_workspace
def register(
    ws: Workspace,
    source: str,
    name: str,
    artifact: str,
    run_id: str | None,
    description: str | None,
    tags: tuple[str, ...],
    trust_pickle: bool,
) -> None:
    """Register SOURCE (a run id or prefix, or a saved model folder) as the next version.

    A pipeline run stands for the step run that logged the model. The same model from the same
    run again is the version it already made, not a new one.
    """
    from modelyard.errors import NotFound
    from modelyard.models import register as register_version

    try:
        latest_before = ws.store.models.get_version(name).version
    except NotFound:
        latest_before = 0
    version = register_version(
        source,
        name,
        artifact=artifact,
        run=run_id,
        description=description,
        tags=_pairs(tags, "tag"),
        trust_pickle=trust_pickle,
        workspace=ws,
    )
    run = f" from run {version.run_id[:12]}" if version.run_id else ""
    if version.version <= latest_before:
        console().print(f"Already registered as {version.ref} ({_short(version.digest)}){run}")
        return
    console().print(f"Registered {version.ref} ({version.flavor}, {_short(version.digest)}){run}")


@models.command("list")
@pass_workspace
def list_(ws: Workspace) -> None:
    """List registered models."""
    from modelyard.models import list_models

    found = list_models(ws)
    out = console()
    if not found:
        out.print("No registered models. Register one with 'modelyard models register'.")
        return
    table = Table("name", "latest", "aliases", "created", "description")
    for model in found:
        aliases = ", ".join(f"{a}→{v}" for a, v in model.aliases.items())
        table.add_row(
            model.name,
            str(model.latest_version or "-"),
            aliases or "-",
            _when(model.created_at),
            model.description or "",
        )
    out.print(table)


@models.command()
@click.argument("ref")
@pass_workspace
def show(ws: Workspace, ref: str) -> None:
    """Show one version (REF: churn@3, churn@production, churn@latest, churn@sha256:…)."""
    from modelyard.models import resolve

    v = resolve(ref, ws)
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, Any]] = [
        ("version", v.ref),
        ("status", v.status),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("flavor", v.flavor),
        ("digest", v.digest),
        ("run", v.run_id or "-"),
        ("source", v.source or "-"),
        ("created", f"{_when(v.created_at)} by {v.created_by or 'unknown'}"),
        ("description", v.description or "-"),
        ("trusted code", _trust_text(v)),
        ("requirements", ", ".join(f"{k}=={r}" for k, r in (v.requirements or {}).items())),
        ("tags", ", ".join(f"{k}={t}" for k, t in sorted(v.tags.items())) or "-"),
    ]
    if v.image_ref:
        rows.append(("image", f"{v.image_ref} {v.image_digest or ''}".strip()))
    for key, value in rows:
        table.add_row(key, str(value))
    out = console()
    out.print(table)
    if v.signature:
        sig = Table("input", "dtype", "shape", title="signature")
        for col in v.signature.get("inputs", []):
            sig.add_row(str(col.get("name")), str(col.get("dtype")), str(col.get("shape", "")))
        out.print(sig)


@models.command()
@click.argument("name")
@pass_workspace
def versions(ws: Workspace, name: str) -> None:
    """List the versions of model NAME."""
    from modelyard.models import list_versions

    table = Table("version", "status", "aliases", "flavor", "digest", "run", "created")
    for v in list_versions(name, ws):
        table.add_row(
            str(v.version),
            v.status,
            ", ".join(v.aliases) or "-",
            v.flavor,
            _short(v.digest),
            (v.run_id or "-")[:12],
            _when(v.created_at),
        )
    console().print(table)


def _render_report(report: GateReport) -> None:
    if not report.results:
        console().print(f"No gate guards {report.alias!r}.")
        return
    table = Table("check", "result", "detail", "declared in", title=f"gate for {report.alias}")
    for r in report.results:
        mark = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        table.add_row(r.check, mark, r.detail, r.source)
    console().print(table)


def _promote(ws: Workspace, ref: str, alias: str, reason: str | None, force: bool) -> None:
    from modelyard.models import PromotionRefused, promote

    try:
        result = promote(ref, alias, force=force, reason=reason, workspace=ws)
    except PromotionRefused as exc:
        _render_report(exc.report)
        raise
    if result.report.results:
        _render_report(result.report)
    move = result.move
    was = f" (was {move.name}@{move.from_version})" if move.from_version else ""
    forced = " [FORCED past failed checks]" if move.forced else ""
    console().print(f"{move.name}@{alias} → {result.version.ref}{was}{forced}")


_REASON = click.option("--reason", help="Why (kept in the alias history).")
_FORCE = click.option(
    "--force", is_flag=True, help="Move even if gate checks fail (recorded as forced)."
)


@models.command()
@click.argument("ref")
@click.argument("alias")
@_REASON
@_FORCE
@pass_workspace
def alias(ws: Workspace, ref: str, alias: str, reason: str | None, force: bool) -> None:
    """Point ALIAS at version REF. Aliases guarded by a gate are checked as by 'promote'."""
    _promote(ws, ref, alias, reason, force)


@models.command()
@click.argument("ref")
@click.argument("alias")
@_REASON
@_FORCE
@pass_workspace
def promote(ws: Workspace, ref: str, alias: str, reason: str | None, force: bool) -> None:
    """Promote REF to ALIAS if its gate passes; prints every check."""
    _promote(ws, ref, alias, reason, force)


@models.command()
@click.argument("name")
@click.argument("alias")
@_REASON
@pass_workspace
def unalias(ws: Workspace, name: str, alias: str, reason: str | None) -> None:
    """Remove ALIAS from model NAME (recorded in the history)."""
    from modelyard.models import remove_alias

    move = remove_alias(name, alias, reason=reason, workspace=ws)
    console().print(f"Removed {name}@{alias} (was {name}@{move.from_version})")


@models.command()
@click.argument("name")
@click.option("--alias", "only", help="Only this alias.")
@pass_workspace
def history(ws: Workspace, name: str, only: str | None) -> None:
    """Every alias move of model NAME: who, when, from, to, why."""
    from modelyard.models import alias_history

    table = Table("when", "alias", "from", "to", "who", "reason", "forced")
    for m in alias_history(name, only, workspace=ws):
        table.add_row(
            _when(m.moved_at),
            m.alias,
            str(m.from_version or "-"),
            str(m.to_version or "removed"),
            m.actor or "-",
            m.reason or "",
            "; ".join(m.failed_checks or []) if m.forced else "",
        )
    console().print(table)


@models.command()
@click.argument("ref")
@click.option("--comment", help="Why it is approved.")
@pass_workspace
def approve(ws: Workspace, ref: str, comment: str | None) -> None:
    """Approve version REF (NAME@N) for promotion."""
    from modelyard.models import approve as approve_version

    approval = approve_version(ref, comment=comment, workspace=ws)
    console().print(f"Approved {approval.name}@{approval.version} as {approval.actor}")


@models.command()
@click.argument("name")
@click.option("--check", "checks", multiple=True, help="A check, e.g. 'f1 >= 0.8' (repeatable).")
@click.option("--require-approval", is_flag=True, help="Also require an approval.")
@click.option("--alias", "aliases", multiple=True, help="Aliases it guards (default: all).")
@click.option("--clear", is_flag=True, help="Remove the model's own gate.")
@pass_workspace
def gate(
    ws: Workspace,
    name: str,
    checks: tuple[str, ...],
    require_approval: bool,
    aliases: tuple[str, ...],
    clear: bool,
) -> None:
    """Set model NAME's own gate (added to any gate in the workspace config)."""
    from modelyard.models import set_gate

    if clear and (checks or require_approval or aliases):
        raise InvalidParameter("--clear cannot be combined with --check/--require-approval")
    if not clear and not checks and not require_approval:
        raise InvalidParameter("give --check and/or --require-approval, or --clear")
    result = set_gate(
        name,
        checks,
        require_approval=require_approval,
        aliases=aliases or None,
        workspace=ws,
    )
    if result.empty:
        console().print(f"Removed the gate of model {name}")
        return
    parts = [c.text for c in result.checks] + (["approval"] if require_approval else [])
    console().print(f"Gate of {name}: {'; '.join(parts)}")


@models.command()
@click.argument("left")
@click.argument("right")
@pass_workspace
def diff(ws: Workspace, left: str, right: str) -> None:
    """Compare two versions: params, metrics, signature, requirements, datasets."""
    from modelyard.models import diff as diff_versions

    d = diff_versions(left, right, ws)
    out = console()
    if d.identical:
        out.print(f"{d.left.ref} and {d.right.ref} do not differ")
        return
    table = Table("section", "key", d.left.ref, d.right.ref)
    sections = (
        ("model", d.fields),
        ("params", d.params),
        ("metrics", d.metrics),
        ("signature", d.signature),
        ("requirements", d.requirements),
        ("datasets", d.datasets),
    )
    for section, changes in sections:
        for key, (a, b) in changes.items():
            table.add_row(section, key, "-" if a is None else str(a), "-" if b is None else str(b))
    out.print(table)


def _show_version_line(verb: str, v: ModelVersion) -> None:
    console().print(f"{verb} {v.ref}")


@models.command()
@click.argument("ref")
@pass_workspace
def archive(ws: Workspace, ref: str) -> None:
    """Archive version REF (NAME@N): no longer 'latest', still resolvable by number."""
    from modelyard.models import archive as archive_version

    _show_version_line("Archived", archive_version(ref, ws))


@models.command()
@click.argument("ref")
@pass_workspace
def unarchive(ws: Workspace, ref: str) -> None:
    """Make archived version REF active again."""
    from modelyard.models import unarchive as unarchive_version

    _show_version_line("Unarchived", unarchive_version(ref, ws))


@models.command()
@click.argument("ref")
@click.argument("text")
@pass_workspace
def describe(ws: Workspace, ref: str, text: str) -> None:
    """Set the description of version REF (NAME@N), or of the model for a bare NAME."""
    from modelyard.models import describe as describe_ref

    describe_ref(ref, text or None, ws)
    console().print(f"Described {ref}")


@models.command()
@click.argument("ref")
@click.argument("tags", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", "remove", multiple=True, metavar="KEY", help="Remove a tag.")
@pass_workspace
def tag(ws: Workspace, ref: str, tags: tuple[str, ...], remove: tuple[str, ...]) -> None:
    """Set (or --remove) tags on version REF (NAME@N)."""
    from modelyard.models import remove_tags, set_tags

    if not tags and not remove:
        raise InvalidParameter("give KEY=VALUE tags to set or --remove KEY")
    version = set_tags(ref, _pairs(tags, "tag"), ws)
    if remove:
        version = remove_tags(ref, list(remove), ws)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(version.tags.items())) or "(none)"
    console().print(f"{version.ref} tags: {shown}")


@models.command()
@click.argument("ref")
@click.option("--revoke", is_flag=True, help="Withdraw the trust.")
@pass_workspace
def trust(ws: Workspace, ref: str, revoke: bool) -> None:
    """Trust (or --revoke) version REF (NAME@N) to run its own code on load.

    Pickled models and python models run code that came with them when they load; modelyard
    serves, builds or deploys them only after this decision, which is recorded with who made
    it, when, and the digest of the content trusted (a version whose content differs is refused
    again). On a team server it needs an admin token.
    """
    from modelyard.models import resolve, trust_pickle

    trust_pickle(ref, not revoke, ws)
    if revoke:
        console().print(f"{ref}: not trusted to run its code")
        return
    version = resolve(ref, ws)
    console().print(f"{ref}: trusted to run its code (content {_short(version.digest)})")


def _trust_text(v: ModelVersion) -> str:
    if not v.trusted_pickle:
        return "no"
    given = f"by {v.trusted_by or 'unknown'} {_when(v.trusted_at)}"
    content = _short(v.trusted_digest) if v.trusted_digest else "-"
    stale = "" if v.code_trusted else f"; NOT VALID: the version now holds {_short(v.digest)}"
    return f"yes, {given}, for content {content}{stale}"
