"""The daily-results chart of a control: one row per collector plus the control's own row, one column
per day, coloured by status. Inline SVG built from run-length rectangles (consecutive days of one status
are one rectangle), so it is tiny, deterministic text (the same assessment gives the same bytes) and
cheap for WeasyPrint to lay out: a whole catalog of controls renders in seconds, where a plotting
library took half a second per control."""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from attestly.reports.model import Assessment

#: Colour per status (collector cell statuses and control-day statuses share the palette).
COLOURS: dict[str, str] = {
    "effective": "#2e7d32",
    "pass": "#2e7d32",
    "exception": "#c62828",
    "fail": "#c62828",
    "error": "#6a1b9a",
    "no_evidence": "#9e9e9e",
    "missing": "#9e9e9e",
    "not_assessed": "#f9c74f",
}
_LEGEND = [
    ("pass / effective", "#2e7d32"),
    ("fail / exception", "#c62828"),
    ("error", "#6a1b9a"),
    ("no evidence", "#9e9e9e"),
    ("not assessed", "#f9c74f"),
]
_LABEL_W, _ROW_H, _PLOT_W, _TOP, _AXIS_H, _LEGEND_H = 230, 14, 560, 4, 16, 18


def _label(collector: str) -> str:
    return "manual evidence" if collector.startswith("manual:") else collector


def _runs(statuses: list[str]) -> list[tuple[int, int, str]]:
    """``(first index, length, status)`` for each run of equal statuses."""
    out: list[tuple[int, int, str]] = []
    for i, s in enumerate(statuses):
        if out and out[-1][2] == s and out[-1][0] + out[-1][1] == i:
            out[-1] = (out[-1][0], out[-1][1] + 1, s)
        else:
            out.append((i, 1, s))
    return out


def chart_svg(assessment: Assessment) -> str:
    """The chart as an ``<svg>`` element (for inline use in the report HTML); empty for no days."""
    days = [d.day for d in assessment.days]
    if not days:
        return ""
    rows: list[tuple[str, list[str]]] = [("control", [str(d.status) for d in assessment.days])]
    for i, c in enumerate(assessment.collectors):
        rows.append((_label(c), [str(d.cells[i].status) for d in assessment.days]))
    n = len(days)
    day_w = _PLOT_W / n
    height = _TOP + _ROW_H * len(rows) + _AXIS_H + _LEGEND_H
    width = _LABEL_W + _PLOT_W + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans" font-size="8" role="img">'
    ]
    for r, (label, statuses) in enumerate(rows):
        y = _TOP + r * _ROW_H
        weight = ' font-weight="bold"' if r == 0 else ""
        parts.append(
            f'<text x="{_LABEL_W - 4}" y="{y + _ROW_H - 4}" text-anchor="end"{weight}>{escape(label)}</text>'
        )
        for first, length, status in _runs(statuses):
            parts.append(
                f'<rect x="{_LABEL_W + first * day_w:.2f}" y="{y + 1}" width="{length * day_w:.2f}" '
                f'height="{_ROW_H - 2}" fill="{COLOURS.get(status, "#f9c74f")}"/>'
            )
    axis_y = _TOP + _ROW_H * len(rows)
    parts.append(
        f'<line x1="{_LABEL_W}" y1="{_TOP + _ROW_H}" x2="{_LABEL_W + _PLOT_W}" y2="{_TOP + _ROW_H}" '
        'stroke="white" stroke-width="1.5"/>'
    )
    ticks = [i for i, d in enumerate(days) if d.day == 1 or i == 0]
    if len(ticks) < 3:
        ticks = list(range(0, n, max(1, n // 6)))
    for i in ticks:
        parts.append(f'<text x="{_LABEL_W + i * day_w:.2f}" y="{axis_y + 11}">{days[i].isoformat()}</text>')
    x: float = _LABEL_W
    ly = axis_y + _AXIS_H + 2
    for label, colour in _LEGEND:
        parts.append(f'<rect x="{x}" y="{ly}" width="9" height="9" fill="{colour}"/>')
        parts.append(f'<text x="{x + 12}" y="{ly + 8}">{label}</text>')
        x += 14 + 5.2 * len(label) + 10
    parts.append("</svg>")
    return "".join(parts)
