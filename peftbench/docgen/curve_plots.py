"""Learning-curve plots of one leaderboard table: training loss and the validation score (the
table's primary metric) against the optimiser step, one line per row (its final runs, the
configuration the table shows).

Each line is the mean over the row's seeds, with a band from the lowest to the highest seed; the
data is the leaderboard's curves frame (``Leaderboard.curves_frame``), summarised over seeds on
the steps they all have. Colours and markers are those of the table's score-vs-cost plots,
and the SVG is deterministic in the same way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from peftbench.docgen.plots import SVG_METADATA, SVG_SETTINGS, completed_rows, literal, table_styles
from peftbench.leaderboard.curves import summarise_curves
from peftbench.tasks.metrics import Metric

#: Line styles that tell apart the configurations of one method (which share its colour).
VARIANT_LINES = ("-", "--", ":", "-.")
BAND = "band: lowest to highest seed"


@dataclass(frozen=True)
class CurvePlot:
    """One learning-curve plot: which series of the curves frame, and how to draw it."""

    name: str  # file-name suffix
    metric: str  # the ``metric`` of the curves frame
    label: str  # y-axis label
    scale: float  # 100: a share shown as a percentage
    markers: bool  # mark each point (the few validation evaluations), not a dense line


def curve_plots(metric: Metric) -> tuple[CurvePlot, ...]:
    """The curve plots of a table scored by ``metric``: training loss, and the validation score."""
    unit = ", %" if metric.percent else ""
    return (
        CurvePlot("curve-train-loss", "train_loss", "training loss (mean per logging interval)", 1.0, False),
        CurvePlot(
            f"curve-validation-{metric.name.replace('_', '-')}",
            f"validation_{metric.name}",
            f"validation {metric.title}{unit}",
            100.0 if metric.percent else 1.0,
            True,
        ),  # fmt: skip
    )


def curve_plot_files(slug: str, curves: pd.DataFrame, metric: Metric) -> dict[str, str]:
    """File name per curve plot of a table whose slug is ``slug``: only for series some run has."""
    present = set(curves["metric"].dropna())
    return {plot.name: f"{slug}-{plot.name}.svg" for plot in curve_plots(metric) if plot.metric in present}


def render_curve_plots(
    table: pd.DataFrame, curves: pd.DataFrame, slug: str, title: str, metric: Metric
) -> dict[str, bytes]:
    """The learning-curve plots of one table as SVG bytes, by file name (none if it has no curves).

    ``table`` is the table's rows of the leaderboard frame, ``curves`` its rows of the curves frame,
    ``metric`` its primary metric.
    """
    rows = completed_rows(table)
    styles = table_styles(table)
    summary = summarise_curves(curves[curves["label"].isin(rows["label"])])
    files = {}
    for plot in curve_plots(metric):
        name = curve_plot_files(slug, curves, metric).get(plot.name)
        if name is None:
            continue
        buffer = io.BytesIO()
        with matplotlib.rc_context(SVG_SETTINGS):
            figure = _draw(rows, summary[summary["metric"] == plot.metric], plot, styles, title)
            figure.savefig(buffer, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
        files[name] = buffer.getvalue()
    return files


def _draw(
    rows: pd.DataFrame, summary: pd.DataFrame, plot: CurvePlot, styles: dict[str, tuple[str, str]], title: str
) -> Figure:
    figure = Figure(figsize=(7.0, 4.2))
    axes = figure.add_subplot()
    variants: dict[str, int] = {}
    for row in rows.itertuples(index=False):  # the table's order: best first
        points = summary[summary["label"] == row.label]
        if points.empty:
            continue
        method = str(row.method)
        colour, marker = styles[method]
        line = VARIANT_LINES[variants.setdefault(method, 0) % len(VARIANT_LINES)]
        variants[method] += 1
        steps = points["step"].astype(int)
        seeds = int(points["seeds"].min())
        shown = f"{row.label} (1 seed, no band)" if seeds == 1 else f"{row.label} ({seeds} seeds)"
        axes.plot(
            steps, plot.scale * points["mean"], color=colour, linestyle=line, linewidth=1.4,
            marker=marker if plot.markers else None, markersize=5,
            label=literal(shown),
        )  # fmt: skip
        if seeds > 1:
            axes.fill_between(
                steps, plot.scale * points["low"], plot.scale * points["high"], color=colour, alpha=0.15,
                linewidth=0,
            )  # fmt: skip
    axes.set_xlabel("optimiser step")
    axes.set_ylabel(f"{plot.label}\nmean over seeds; {BAND}")
    axes.set_title(literal(title), fontsize=10)
    axes.grid(True, which="major", linewidth=0.4, alpha=0.5)
    if axes.lines:
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    else:
        axes.text(0.5, 0.5, "no learning curves", ha="center", va="center", transform=axes.transAxes)
    return figure
