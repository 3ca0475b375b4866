"""The daily-results chart of a control: one row per collector plus the control's own row, one column
per day, coloured by status. A PNG with fixed metadata (no Software/date chunks), so the same
assessment gives the same bytes; embedded in the HTML as a ``data:`` URI."""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING

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
_CODES = {"pass": 0, "effective": 0, "fail": 1, "exception": 1, "error": 2, "missing": 3, "no_evidence": 3}
_PALETTE = ["#2e7d32", "#c62828", "#6a1b9a", "#9e9e9e", "#f9c74f"]
_LEGEND = [
    ("pass / effective", 0),
    ("fail / exception", 1),
    ("error", 2),
    ("no evidence", 3),
    ("not assessed", 4),
]


def _code(status: str) -> int:
    return _CODES.get(status, 4)


def chart_png(assessment: Assessment) -> bytes:
    """Render the chart; deterministic for the same assessment (Agg backend, fixed metadata)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows = ["control", *assessment.collectors]
    days = [d.day for d in assessment.days]
    matrix = [[_code(d.status) for d in assessment.days]]
    for i in range(len(assessment.collectors)):
        matrix.append([_code(d.cells[i].status) for d in assessment.days])

    with matplotlib.rc_context(
        {"font.family": "DejaVu Sans", "font.size": 8, "axes.linewidth": 0.5, "path.simplify": False}
    ):
        fig = Figure(figsize=(9.0, 1.3 + 0.26 * len(rows)), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        cmap = ListedColormap(_PALETTE)
        norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5, 3.5, 4.5], cmap.N)
        ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(rows)
        ticks = [i for i, d in enumerate(days) if d.day == 1 or i == 0]
        if len(ticks) < 3:
            ticks = list(range(0, len(days), max(1, len(days) // 8)))
        ax.set_xticks(ticks)
        ax.set_xticklabels([days[i].isoformat() for i in ticks])
        ax.set_xticks([i - 0.5 for i in range(1, len(days))], minor=True)
        ax.set_yticks([i - 0.5 for i in range(1, len(rows))], minor=True)
        ax.grid(which="minor", color="white", linewidth=0.6 if len(days) <= 120 else 0.0)
        ax.tick_params(which="minor", length=0)
        ax.axhline(0.5, color="black", linewidth=1.0)
        fig.legend(
            handles=[Patch(color=_PALETTE[code], label=label) for label, code in _LEGEND],
            loc="lower center",
            ncol=len(_LEGEND),
            frameon=False,
        )
        fig.subplots_adjust(
            left=0.26, right=0.99, top=0.97, bottom=max(0.12, 0.5 / (1.3 + 0.26 * len(rows))) + 0.08
        )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
