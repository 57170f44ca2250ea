"""Rich renderables for the terminal: what ``modelyard monitor check`` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from modelyard.monitor.availability import AvailabilityReport
    from modelyard.monitor.drift import DriftReport
    from modelyard.monitor.quality import QualityReport


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "—" if value is None else format(value, fmt)


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def render_drift(report: DriftReport) -> RenderableType:
    """A verdict line, one row per feature (drifted ones first) and the data-quality findings."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    what = "Prediction drift" if report.kind == "prediction" else "Data drift"
    window = ""
    if report.window is not None:
        w = report.window
        span = f"{w.start:%Y-%m-%d %H:%M} → {w.end:%H:%M}, " if w.start and w.end else ""
        window = f" ({span}{w.requests} requests, {w.rows} rows)"
    verdict = Text(
        f"{what} vs {report.reference}{window}: ",
        style="bold",
    )
    verdict.append(
        "DRIFTED" if report.drifted else "no drift",
        style="bold red" if report.drifted else "bold green",
    )
    verdict.append(
        f" — {report.n_drifted} of {len(report.features)} features "
        f"({report.drift_share:.0%}), alpha {report.config.alpha:g} "
        f"({report.config.correction})"
    )
    table = Table(show_edge=False, header_style="bold")
    for col in ("feature", "type", "test", "statistic", "p (adj.)", "effect", "n", "drift"):
        table.add_column(col, justify="right" if col in ("statistic", "n") else "left")
    for f in sorted(report.features, key=lambda f: (not f.drifted, f.p_adjusted or 1.0)):
        if f.kind == "numeric":
            effect = (
                f"W {_num(f.wasserstein, '.2f')}σ · PSI {_num(f.psi, '.3f')}"
                if f.wasserstein is not None
                else "—"
            )
        else:
            effect = f"JS {_num(f.js_distance, '.3f')}" if f.js_distance is not None else "—"
        table.add_row(
            f.name,
            f.kind,
            f.test,
            _num(f.statistic),
            _p(f.p_adjusted),
            effect,
            str(f.n_current),
            Text("drifted", style="red")
            if f.drifted
            else Text("untested" if f.p_value is None else "ok", style="dim"),
        )
    parts: list[RenderableType] = [verdict, table]
    if report.findings:
        findings = Table(title="Data-quality findings", show_edge=False, header_style="bold")
        for col in ("feature", "finding", "rows", "detail"):
            findings.add_column(col)
        for item in report.findings:
            detail = item.message + (f": {', '.join(item.examples)}" if item.examples else "")
            findings.add_row(item.feature, item.kind, str(item.count), detail)
        parts.append(findings)
    return Group(*parts)


def render_quality(report: QualityReport) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(
        f"Quality ({report.task}): {report.n_labelled} labelled of "
        f"{report.n_predictions} predictions",
        style="bold",
    )
    if not report.sufficient:
        head.append(f" — no verdict below {report.min_labels} labels", style="yellow")
    table = Table(show_edge=False, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column(f"{report.confidence:.0%} interval", justify="right")
    for m in report.metrics:
        interval = (
            f"{m.low:.3f} – {m.high:.3f}" if m.low is not None and m.high is not None else "—"
        )
        table.add_row(m.name, _num(m.value), interval)
    return Group(head, table)


def render_availability(report: AvailabilityReport) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(show_edge=False, header_style="bold")
    for col in ("endpoint", "ready", "requests", "error rate", "p50 ms", "p99 ms", "note"):
        table.add_column(col)
    for e in report.endpoints:
        table.add_row(
            e.url,
            Text("yes", style="green") if e.ready else Text("NO", style="bold red"),
            f"{e.requests:g}",
            "—" if e.error_rate is None else f"{e.error_rate:.2%}",
            _num(e.latency_ms.get("p50"), ".1f"),
            _num(e.latency_ms.get("p99"), ".1f"),
            e.error or "",
        )
    parts: list[RenderableType] = [table]
    for event in report.events:
        parts.append(Text(f"{event.kind}: {event.url}: {event.message}", style="red"))
    return Group(*parts)
