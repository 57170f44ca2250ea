"""One self-contained HTML report: readable offline, no CDN, no JavaScript.

Charts are inline SVG drawn here (bars for reference-vs-current distributions, lines for drift
and quality over time) so the file can be mailed, archived next to a monitor report, or opened
on a machine without network. Every string from data is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.monitor.availability import AvailabilityReport
    from modelyard.monitor.drift import DriftReport, FeatureDrift
    from modelyard.monitor.quality import QualityReport

SVG = 'xmlns="http://www.w3.org/2000/svg"'
REF_COLOR = "#4c78a8"
CUR_COLOR = "#f58518"
BAD_COLOR = "#d62728"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;
max-width:1200px}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #eee;padding:.25rem .6rem;text-align:left}
th{background:#fafafa}.drifted{color:#d62728;font-weight:600}.ok{color:#2ca02c}
.muted{color:#888}.grid{display:flex;flex-wrap:wrap;gap:1rem}
.card{border:1px solid #e5e5e5;border-radius:6px;padding:.5rem .7rem}
.card h3{font-size:.95rem;margin:.2rem 0}.legend span{margin-right:1rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "—" if value is None else format(value, spec)


def _when(report: DriftReport | QualityReport, index: int) -> str:
    w = report.window
    if w is not None and w.end is not None:
        return w.end.strftime("%m-%d %H:%M")
    return f"#{index + 1}"


def _bars(feature: FeatureDrift, width: int = 340, height: int = 140) -> str:
    ref, cur = feature.reference_share, feature.current_share
    if not ref or not cur:
        return '<p class="muted">no distribution (not tested)</p>'
    top = max(max(ref), max(cur)) or 1.0
    k = len(ref)
    pad_l, pad_b = 8, 22
    slot = (width - pad_l * 2) / k
    bar = max(slot / 2 - 1, 1)
    parts = [f'<svg {SVG} width="{width}" height="{height}" role="img">']
    for i in range(k):
        x = pad_l + i * slot
        for j, (share, color) in enumerate(((ref[i], REF_COLOR), (cur[i], CUR_COLOR))):
            h = (height - pad_b - 6) * share / top
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{height - pad_b - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{_e(_bin_label(feature, i))}: '
                f"{'reference' if j == 0 else 'current'} {share:.1%}</title></rect>"
            )
    parts.append(
        f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - pad_l}" '
        f'y2="{height - pad_b}" stroke="#999"/>'
    )
    if feature.kind == "numeric" and feature.bins:
        parts.append(
            f'<text x="{pad_l}" y="{height - 6}" font-size="10">{_e(_fmt(feature.bins[0]))}'
            f'</text><text x="{width - pad_l}" y="{height - 6}" font-size="10" '
            f'text-anchor="end">{_e(_fmt(feature.bins[-1]))}</text>'
        )
    else:
        for i in range(min(k, 8)):
            label = str(feature.bins[i])[:8]
            parts.append(
                f'<text x="{pad_l + i * slot + slot / 2:.1f}" y="{height - 6}" font-size="9" '
                f'text-anchor="middle">{_e(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _bin_label(feature: FeatureDrift, i: int) -> str:
    if feature.kind == "numeric" and len(feature.bins) > i + 1:
        return f"[{_fmt(feature.bins[i])}, {_fmt(feature.bins[i + 1])})"
    return str(feature.bins[i]) if i < len(feature.bins) else str(i)


def _lines(
    series: Mapping[str, Sequence[float | None]],
    labels: Sequence[str],
    *,
    bands: Mapping[str, Sequence[tuple[float | None, float | None]]] | None = None,
    marks: Sequence[bool] | None = None,
    y_range: tuple[float, float] | None = None,
    width: int = 720,
    height: int = 220,
) -> str:
    """A line chart: one polyline per series, optional interval bands and red markers."""
    palette = [REF_COLOR, CUR_COLOR, "#54a24b", "#b279a2", "#9d755d", "#e45756", "#72b7b2"]
    values = [v for s in series.values() for v in s if v is not None]
    for intervals in (bands or {}).values():
        values += [v for pair in intervals for v in pair if v is not None]
    if not values or not labels:
        return '<p class="muted">no data</p>'
    lo, hi = y_range or (min(values), max(values))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad_l, pad_r, pad_t, pad_b = 48, 12, 10, 26
    n = len(labels)

    def x(i: int) -> float:
        return pad_l + (width - pad_l - pad_r) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return pad_t + (height - pad_t - pad_b) * (1 - (v - lo) / (hi - lo))

    out = [f'<svg {SVG} width="{width}" height="{height}" role="img">']
    for frac in (0.0, 0.5, 1.0):
        tick = lo + (hi - lo) * frac
        out.append(
            f'<line x1="{pad_l}" x2="{width - pad_r}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            f'stroke="#eee"/><text x="{pad_l - 4}" y="{y(tick) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{_e(_fmt(tick))}</text>'
        )
    step = max(1, n // 8)
    for i in range(0, n, step):
        out.append(
            f'<text x="{x(i):.1f}" y="{height - 8}" font-size="10" text-anchor="middle">'
            f"{_e(labels[i])}</text>"
        )
    for idx, (name, seq) in enumerate(series.items()):
        color = palette[idx % len(palette)]
        band = (bands or {}).get(name)
        if band:
            upper = [
                (x(i), y(h))
                for i, (lo_v, h) in enumerate(band)
                if h is not None and lo_v is not None
            ]
            lower = [
                (x(i), y(lo_v))
                for i, (lo_v, h) in enumerate(band)
                if h is not None and lo_v is not None
            ]
            if len(upper) > 1:
                pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in upper + lower[::-1])
                out.append(f'<polygon points="{pts}" fill="{color}" opacity="0.15"/>')
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(seq) if v is not None)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for i, v in enumerate(seq):
            if v is None:
                continue
            fill = BAD_COLOR if marks and marks[i] else color
            out.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{fill}">'
                f"<title>{_e(name)} {_e(labels[i])}: {_e(_fmt(v))}</title></circle>"
            )
    out.append("</svg>")
    legend = "".join(
        f'<span><i class="swatch" style="background:{palette[i % len(palette)]}"></i>{_e(n_)}'
        "</span>"
        for i, n_ in enumerate(series)
    )
    return "".join(out) + f'<div class="legend">{legend}</div>'


def _drift_section(reports: Sequence[DriftReport]) -> str:
    latest = reports[-1]
    verdict = (
        '<span class="drifted">DRIFTED</span>'
        if latest.drifted
        else '<span class="ok">no drift</span>'
    )
    w = latest.window
    window = f", window of {w.requests} requests / {w.rows} rows" if w else ""
    out = [
        f"<h2>{'Prediction' if latest.kind == 'prediction' else 'Data'} drift — latest window</h2>",
        f"<p>Verdict: {verdict}: {latest.n_drifted} of {len(latest.features)} features "
        f"drifted (share {latest.drift_share:.0%}) against <b>{_e(latest.reference)}</b>"
        f"{_e(window)}; alpha {latest.config.alpha:g}, {_e(latest.config.correction)}.</p>",
        "<table><tr><th>feature</th><th>type</th><th>test</th><th>statistic</th>"
        "<th>p (adjusted)</th><th>effect</th><th>rows</th><th>verdict</th></tr>",
    ]
    for f in latest.features:
        if f.kind == "numeric":
            effect = (
                f"Wasserstein {_fmt(f.wasserstein)} σ, "
                f"PSI {_fmt(f.psi)} (limit {_fmt(f.psi_threshold)})"
            )
        else:
            effect = f"JS {_fmt(f.js_distance)} (limit {_fmt(f.js_threshold)})"
        state = (
            '<td class="drifted">drifted</td>'
            if f.drifted
            else f'<td class="ok">{"not tested" if f.p_value is None else "ok"}</td>'
        )
        out.append(
            f"<tr><td>{_e(f.name)}</td><td>{f.kind}</td><td>{f.test}</td>"
            f"<td>{_fmt(f.statistic)}</td><td>{_fmt(f.p_adjusted)}</td><td>{_e(effect)}</td>"
            f"<td>{f.n_current}</td>{state}</tr>"
        )
    out.append("</table>")
    if latest.findings:
        out.append(
            "<h3>Data-quality findings</h3><table><tr><th>feature</th><th>finding</th>"
            "<th>rows</th><th>detail</th></tr>"
        )
        for item in latest.findings:
            detail = item.message + (f": {', '.join(item.examples)}" if item.examples else "")
            out.append(
                f"<tr><td>{_e(item.feature)}</td><td>{_e(item.kind)}</td><td>{item.count}</td>"
                f"<td>{_e(detail)}</td></tr>"
            )
        out.append("</table>")
    out.append(
        '<h2>Reference vs current, per feature</h2><div class="legend">'
        f'<span><i class="swatch" style="background:{REF_COLOR}"></i>reference</span>'
        f'<span><i class="swatch" style="background:{CUR_COLOR}"></i>current window</span></div>'
        '<div class="grid">'
    )
    for f in latest.features:
        cls = ' class="drifted"' if f.drifted else ""
        out.append(f'<div class="card"><h3{cls}>{_e(f.name)}</h3>{_bars(f)}</div>')
    out.append("</div>")
    if len(reports) > 1:
        labels = [_when(r, i) for i, r in enumerate(reports)]
        out.append(
            "<h2>Drift over time</h2><p>Share of drifted features per window "
            "(red: the window's verdict was drift).</p>"
        )
        out.append(
            _lines(
                {"drift share": [r.drift_share for r in reports]},
                labels,
                marks=[r.drifted for r in reports],
                y_range=(0.0, 1.0),
            )
        )
        names = [f.name for f in latest.features]
        out.append(
            "<table><tr><th>feature</th>" + "".join(f"<th>{_e(x)}</th>" for x in labels) + "</tr>"
        )
        for name in names:
            cells = []
            for r in reports:
                match = next((f for f in r.features if f.name == name), None)
                if match is None or match.p_value is None:
                    cells.append('<td class="muted">—</td>')
                else:
                    cls = "drifted" if match.drifted else "ok"
                    cells.append(f'<td class="{cls}">{_fmt(match.p_adjusted, ".2g")}</td>')
            out.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
        out.append("</table>")
    return "".join(out)


def _quality_section(reports: Sequence[QualityReport]) -> str:
    latest = reports[-1]
    out = ["<h2>Quality over time</h2>"]
    note = "" if latest.sufficient else f" — no verdict below {latest.min_labels} labels"
    out.append(
        f"<p>Latest window: {latest.n_labelled} labelled of {latest.n_predictions} "
        f"predictions ({_e(latest.task)}){_e(note)}.</p>"
    )
    names = list(dict.fromkeys(m.name for r in reports for m in r.metrics))
    labels = [_when(r, i) for i, r in enumerate(reports)]
    for name in names:
        seq: list[float | None] = []
        band: list[tuple[float | None, float | None]] = []
        for r in reports:
            m = r.metric(name)
            seq.append(m.value if m else None)
            band.append((m.low, m.high) if m else (None, None))
        out.append(f"<h3>{_e(name)}</h3>")
        out.append(
            _lines(
                {name: seq}, labels, bands={name: band}, marks=[not r.sufficient for r in reports]
            )
        )
    out.append(
        "<table><tr><th>window</th><th>labelled</th>"
        + "".join(f"<th>{_e(n)}</th>" for n in names)
        + "</tr>"
    )
    for label, r in zip(labels, reports, strict=True):
        cells = []
        for n in names:
            m = r.metric(n)
            if m is None or m.value is None:
                cells.append("<td>—</td>")
            else:
                ci = f" [{_fmt(m.low)}, {_fmt(m.high)}]" if m.low is not None else ""
                cells.append(f"<td>{_fmt(m.value)}{_e(ci)}</td>")
        out.append(f"<tr><td>{_e(label)}</td><td>{r.n_labelled}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return "".join(out)


def _availability_section(reports: Sequence[AvailabilityReport]) -> str:
    latest = reports[-1]
    out = [
        "<h2>Availability</h2><table><tr><th>endpoint</th><th>ready</th><th>requests</th>"
        "<th>error rate</th><th>p50 ms</th><th>p99 ms</th></tr>"
    ]
    for e in latest.endpoints:
        ready = '<td class="ok">yes</td>' if e.ready else '<td class="drifted">no</td>'
        rate = "—" if e.error_rate is None else f"{e.error_rate:.2%}"
        out.append(
            f"<tr><td>{_e(e.url)}</td>{ready}<td>{e.requests:g}</td><td>{rate}</td>"
            f"<td>{_fmt(e.latency_ms.get('p50'))}</td><td>{_fmt(e.latency_ms.get('p99'))}"
            "</td></tr>"
        )
    out.append("</table>")
    events = [(r.checked_at, ev) for r in reports for ev in r.events]
    if events:
        out.append("<table><tr><th>time</th><th>event</th><th>endpoint</th><th>detail</th></tr>")
        for when, ev in events:
            out.append(
                f'<tr><td>{when:%Y-%m-%d %H:%M:%S}</td><td class="drifted">'
                f"{_e(ev.kind)}</td><td>{_e(ev.url)}</td><td>{_e(ev.message)}</td></tr>"
            )
        out.append("</table>")
    return "".join(out)


def _decisions_section(decisions: Sequence[Mapping[str, Any]]) -> str:
    out = ["<h2>Retrain decisions</h2>"]
    if not decisions:
        return out[0] + '<p class="muted">No retrain decisions in this period.</p>'
    keys = list(dict.fromkeys(k for d in decisions for k in d))
    out.append("<table><tr>" + "".join(f"<th>{_e(k)}</th>" for k in keys) + "</tr>")
    for d in decisions:
        out.append("<tr>" + "".join(f"<td>{_e(d.get(k, ''))}</td>" for k in keys) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(
    *,
    drift: Sequence[DriftReport] = (),
    quality: Sequence[QualityReport] = (),
    availability: Sequence[AvailabilityReport] = (),
    decisions: Sequence[Mapping[str, Any]] = (),
    title: str = "modelyard monitor report",
) -> str:
    """The report as an HTML string (see :func:`write_html_report`)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [f'<h1>{_e(title)}</h1><p class="muted">Generated {now}.</p>']
    data = [r for r in drift if r.kind != "prediction"]
    predictions = [r for r in drift if r.kind == "prediction"]
    if data:
        body.append(_drift_section(data))
    if predictions:
        body.append(_drift_section(predictions))
    if not drift:
        body.append('<h2>Drift</h2><p class="muted">No drift reports.</p>')
    if quality:
        body.append(_quality_section(quality))
    if availability:
        body.append(_availability_section(availability))
    body.append(_decisions_section(decisions))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def write_html_report(
    path: str | Path,
    *,
    drift: Sequence[DriftReport] = (),
    quality: Sequence[QualityReport] = (),
    availability: Sequence[AvailabilityReport] = (),
    decisions: Sequence[Mapping[str, Any]] = (),
    title: str = "modelyard monitor report",
) -> Path:
    """Write one self-contained HTML file. Reports are given oldest first (one per window);
    the latest drives the tables and distribution charts, all of them the over-time charts.
    ``decisions`` are plain dicts (one row each, keys become columns)."""
    target = Path(path)
    text = render_html(
        drift=drift, quality=quality, availability=availability, decisions=decisions, title=title
    )
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
