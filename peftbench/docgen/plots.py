"""Score-vs-cost plots of one leaderboard table (its primary metric: accuracy, Spearman, ...), as
static SVG with the Pareto frontier marked (best meaning highest, or lowest where the metric says).

Static files keep the site readable offline (no plotting script from a CDN) and reviewable in a
diff. Output is deterministic: a fixed SVG hash salt, no creation date, the same order of
drawing for the same table, so regenerating from the same records gives identical bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from peftbench.tasks.metrics import Metric

SVG_SETTINGS = {
    "svg.hashsalt": "peftbench",  # element ids derive from it instead of random uuids
    "svg.fonttype": "none",  # text stays text: small files, readable, no embedded glyphs
    "font.size": 9,
}
SVG_METADATA = {"Date": None, "Creator": "peftbench docs"}
MARKERS = "osD^vP*Xh<>p"


@dataclass(frozen=True)
class PlotSpec:
    """One score-vs-cost plot: which frame column is the cost, and how to draw it."""

    name: str  # file-name suffix
    column: str  # cost column of the leaderboard frame
    label: str  # x-axis label
    log: bool  # log-scale x (costs spanning orders of magnitude)
    zero_means: str  # legend note for a row whose cost is zero (drawn as a horizontal line)
    #: Where a method can also be deployed another way (merged), the frame column of that cost:
    #: drawn as a half-filled marker joined to the row's own point by a dotted line.
    alternative: str | None = None
    alternative_label: str = ""  # legend suffix of the alternative points, e.g. "merged"


PLOTS = (
    PlotSpec("params", "trainable_params", "trainable parameters (log scale)", True, "trains nothing"),
    PlotSpec("time", "train_seconds", "training time, seconds (log scale)", True, "no training"),
    PlotSpec("memory", "peak_memory_mb", "peak memory, MB", False, "not measured"),
    PlotSpec(
        "latency",
        "latency_ms",
        "inference latency at batch 1, ms",
        False,
        "not measured",
        alternative="merged_latency_ms",
        alternative_label="merged",
    ),  # fmt: skip
)


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats: none as cheap or cheaper and as accurate or more,
    with one of the two strictly. Identical points do not beat each other. Sorted by cost."""
    points = list(zip(costs, scores, strict=True))

    def beaten(cost: float, score: float) -> bool:
        return any(c <= cost and a >= score and (c < cost or a > score) for c, a in points)

    front = [i for i, (cost, score) in enumerate(points) if not beaten(cost, score)]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1], i))


def plot_files(slug: str) -> dict[str, str]:
    """Plot file name per spec name, for a table whose slug is ``slug``."""
    return {spec.name: f"{slug}-{spec.name}.svg" for spec in PLOTS}


def render_plots(table: pd.DataFrame, slug: str, title: str, metric: Metric) -> dict[str, bytes]:
    """Every plot of one table as SVG bytes, by file name, its score in ``metric`` (the table's
    primary metric); rows that completed no run are left out."""
    done = completed_rows(table)
    styles = table_styles(table)
    files = {}
    for spec in PLOTS:
        buffer = io.BytesIO()
        with matplotlib.rc_context(SVG_SETTINGS):
            figure = _draw(done, spec, styles, title, metric)
            figure.savefig(buffer, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
        files[plot_files(slug)[spec.name]] = buffer.getvalue()
    return files


def completed_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a table that completed at least one run: the only ones plotted."""
    return table[(table["seeds"] > 0) & table["score"].notna()]


def table_styles(table: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Colour and marker per method of one table, the same in each of its plots (curves too)."""
    return _styles(sorted(completed_rows(table)["method"].astype(str)))


def _styles(names: list[str]) -> dict[str, tuple[str, str]]:
    """The same method gets the same colour and marker in every plot of a table."""
    colours = matplotlib.colormaps["tab10"].colors
    return {name: (colours[i % len(colours)], MARKERS[i % len(MARKERS)]) for i, name in enumerate(names)}


def literal(text: str) -> str:
    """Keep a name from being read as matplotlib mathtext (``$...$``)."""
    return str(text).replace("$", r"\$")


def _draw(
    done: pd.DataFrame, spec: PlotSpec, styles: dict[str, tuple[str, str]], title: str, metric: Metric
) -> Figure:
    scale = 100 if metric.percent else 1
    figure = Figure(figsize=(7.0, 4.2))
    axes = figure.add_subplot()
    cost = done[spec.column].astype(float)
    points = done[cost.notna() & (cost > 0)]
    lines = done[~(cost.notna() & (cost > 0))]
    alternatives: list[tuple[float, float]] = []
    for row in points.itertuples(index=False):
        colour, marker = styles[str(row.method)]
        interval = float(row.score_ci95)
        single = math.isnan(interval)
        axes.errorbar(
            [float(getattr(row, spec.column))],
            [scale * float(row.score)],
            yerr=None if single else [scale * interval],
            fmt=marker,
            color=colour,
            markerfacecolor="white" if single else colour,
            capsize=3,
            markersize=7,
            label=literal(f"{row.method}" + (" (1 seed, no interval)" if single else "")),
            zorder=3,
        )
        alternatives += _draw_alternative(axes, row, spec, colour, marker, scale)
    if len(points):
        _draw_front(axes, [*_costs(points, spec.column, scale), *alternatives], metric.higher_is_better)
    for row in lines.itertuples(index=False):
        colour, _ = styles[str(row.method)]
        value = getattr(row, spec.column)
        note = spec.zero_means if not pd.isna(value) else "not measured"
        axes.axhline(
            scale * float(row.score), color=colour, linestyle="--", linewidth=1,
            label=literal(f"{row.method} ({note})"), zorder=1,
        )  # fmt: skip
    if spec.log and len(points):
        axes.set_xscale("log")
        _label_log_ticks(axes)
    axes.set_xlabel(spec.label)
    unit = ", %" if metric.percent else ""
    lower = "" if metric.higher_is_better else ", lower is better"
    axes.set_ylabel(literal(f"test {metric.title}{unit} (mean ± 95% CI{lower})"))
    axes.set_title(literal(title), fontsize=10)
    axes.grid(True, which="major", linewidth=0.4, alpha=0.5)
    if len(done):
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    else:
        axes.text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=axes.transAxes)
    return figure


def _compact(value: float) -> str:
    """1500 -> 1.5k, 2e6 -> 2M: short tick labels that do not collide."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _label_log_ticks(axes) -> None:
    """Decades labelled compactly; on a short axis (under ~1.5 decades) also the 2s and 5s."""
    low, high = axes.get_xlim()
    short = high / low < 10**1.5

    def minor(value: float, _position: int) -> str:
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9), 6)
        return _compact(value) if short and mantissa in (2.0, 5.0) else ""

    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _position: _compact(value)))
    axes.xaxis.set_minor_formatter(FuncFormatter(minor))


def _costs(points: pd.DataFrame, column: str, scale: float) -> list[tuple[float, float]]:
    """(cost, score as plotted) of each row that has a positive ``column``."""
    cost = points[column].astype(float)
    kept = points[cost.notna() & (cost > 0)]
    return list(zip(kept[column].astype(float), scale * kept["score"].astype(float), strict=True))


def _draw_alternative(
    axes, row, spec: PlotSpec, colour: str, marker: str, scale: float
) -> list[tuple[float, float]]:
    """The row's alternative cost (merged), where it has one, next to its own point in the legend;
    returns the point drawn (none or one)."""
    alternative = getattr(row, spec.alternative) if spec.alternative else None
    if alternative is None or pd.isna(alternative) or not float(alternative) > 0:
        return []
    cost, score = float(alternative), scale * float(row.score)
    axes.plot(
        [float(getattr(row, spec.column)), cost], [score, score], linestyle=":", color=colour,
        linewidth=1, zorder=2,
    )  # fmt: skip
    axes.errorbar(
        [cost], [score], fmt=marker, fillstyle="left", color=colour, markersize=7,
        label=literal(f"{row.method} ({spec.alternative_label})"), zorder=3,
    )  # fmt: skip
    return [(cost, score)]


def _draw_front(axes, points: list[tuple[float, float]], higher_is_better: bool = True) -> None:
    """A step line through the frontier (cheapest first) and a ring around each point on it."""
    costs = [cost for cost, _ in points]
    scores = [score for _, score in points]
    front = pareto_front(costs, scores if higher_is_better else [-score for score in scores])
    xs, ys = [costs[i] for i in front], [scores[i] for i in front]
    axes.step(xs, ys, where="post", color="0.25", linewidth=1.2, label="Pareto frontier", zorder=2)
    axes.scatter(xs, ys, s=220, facecolors="none", edgecolors="0.25", linewidths=1.2, zorder=2)
