"""The picture beside the table across datasets: each method's mean rank with its 95% interval
(a dot and a whisker), best at the top, as static deterministic SVG like the other plots.

The interval is the one ``Leaderboard.aggregate()`` computed (seeds and test examples resampled
within each dataset, ranked again); nothing is recomputed here.
"""

from __future__ import annotations

import io

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from peftbench.docgen.markup import slug
from peftbench.docgen.plots import SVG_METADATA, SVG_SETTINGS, literal

#: Methods in one colour, reference rows (baseline, majority, head_only, ...) in another.
COLOURS = {"method": "tab:blue", "reference": "0.45"}


def rank_plot_file(model: str) -> str:
    """The plot's file name for one model's table across datasets."""
    return f"aggregate-{slug(model)}-ranks.svg"


def render_rank_plot(rows: pd.DataFrame, model: str) -> bytes:
    """One model's rows of ``Leaderboard.aggregate()`` as a dot-and-whisker plot of mean ranks."""
    ordered = rows.sort_values(["mean_rank", "method"], ascending=[False, True])  # best drawn last: on top
    with matplotlib.rc_context(SVG_SETTINGS):
        figure = Figure(figsize=(6.0, 0.9 + 0.32 * len(ordered)))
        axes = figure.add_subplot()
        for position, row in enumerate(ordered.itertuples(index=False)):
            colour = COLOURS["method" if row.role == "method" else "reference"]
            low, high = float(row.mean_rank_low), float(row.mean_rank_high)
            axes.plot([low, high], [position, position], color=colour, linewidth=2, solid_capstyle="butt")
            axes.plot([float(row.mean_rank)], [position], "o", color=colour, markersize=6)
        names = [
            row.method + ("" if row.role == "method" else f" ({row.role})") for row in ordered.itertuples()
        ]
        axes.set_yticks(range(len(ordered)), [literal(name) for name in names])
        top = max(2.0, float(rows["mean_rank_high"].max()))
        axes.set_xlim(0.5, top + 0.5)
        axes.set_xlabel("mean rank over datasets (1 is best), with its 95% interval")
        axes.set_title(literal(f"{model}: mean rank across datasets"), fontsize=10)
        axes.grid(True, axis="x", linewidth=0.4, alpha=0.5)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    return buffer.getvalue()
