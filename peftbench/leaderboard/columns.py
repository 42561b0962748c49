"""Every column of a leaderboard table, declared once: where a run's value comes from in its
record, the frame column that holds it, its dtype, its header and how it is written, what it
sorts by, whether higher is better, and which views show it.

The frame (``model``), the terminal table and the CSV (``report``) and the site's tables
(``peftbench.docgen``) all derive from ``COLUMNS``. The columns that depend on the table's
metric (the primary score, the task's other metrics) are written with the table's ``Metric``, so
every header names it.

Views: ``default`` is what ``peftbench run`` and ``peftbench leaderboard`` print (the columns
that decide), ``all`` adds the rest (``--columns all``), ``site`` is a table page, ``index`` the
site's front page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from peftbench.formatting import number, p_text
from peftbench.leaderboard import diagnostics
from peftbench.tasks.metrics import Metric

ALL, DEFAULT, SITE, INDEX = "all", "default", "site", "index"
VIEWS = (DEFAULT, ALL, SITE, INDEX)
Text = Callable[[Any, Metric], str]  # (a row of the leaderboard frame, the table's metric) -> plain text


@dataclass(frozen=True)
class Column:
    """One column of the leaderboard frame, and how the tables show it."""

    name: str  # frame column (and CSV header)
    header: str = ""  # what people read; "" for a column no table shows
    source: str | None = None  # a run's value in its record: "costs.train_seconds"; None: computed
    dtype: str = "Float64"  # in the per-run frame
    spec: str = ""  # number format of the shown value (with ``scale``); "" with ``text``
    scale: float = 1.0
    text: Text | None = None  # how the value is written, where a format is not enough
    higher_is_better: bool | None = None  # for a score or a cost; None: neither
    views: frozenset[str] = frozenset({ALL, SITE})
    sort: str | None = "name"  # the frame column its cells sort by ("name": its own; None: none)
    untrusted: bool = False  # text from plugins and records (names, sources, values): escape it
    optional: bool = False  # shown only where some row has a value
    timing: bool = False  # a time or speed: marked where measured under other load (``diagnostics``)

    def shown(self, row: Any, metric: Metric) -> str:
        """This column's plain (unescaped) text in one row of the frame."""
        if self.text is not None:
            return self.text(row, metric)
        shown = number(getattr(row, self.name), self.spec, self.scale)
        under = getattr(row, "timed_under_load", pd.NA)
        if shown and self.timing and not pd.isna(under) and bool(under):
            return f"{shown} {diagnostics.UNDER_LOAD}"
        return shown

    @property
    def sorted_by(self) -> str | None:
        return self.name if self.sort == "name" else self.sort


def _cost(name: str, header: str, key: str, spec: str, scale: float = 1.0, **extra: Any) -> Column:
    return Column(name, header, f"costs.{key}", spec=spec, scale=scale, higher_is_better=False, **extra)


def _method(row: Any, metric: Metric) -> str:
    return row.label + ("" if row.role == "method" else f" ({row.role})")


def _score(row: Any, metric: Metric) -> str:
    if not row.seeds:
        return "failed"
    if pd.isna(row.score):
        return "undefined"  # a correlation of constant predictions (the training mean)
    interval = "" if pd.isna(row.score_ci95) else f" ± {metric.number(row.score_ci95)}"
    return metric.number(row.score) + interval


def _delta(row: Any, metric: Metric) -> str:
    delta = metric.number(row.delta_vs_baseline, signed=True)
    if not delta or row.role == "baseline" or pd.isna(row.p_vs_baseline):
        return delta
    return f"{delta} ({p_text(row.p_vs_baseline)})"


def _rank(row: Any, metric: Metric) -> str:
    return "" if pd.isna(row.rank) else str(int(row.rank))


def _seeds(row: Any, metric: Metric) -> str:
    return f"{row.seeds}" + (f" ({row.failed_runs} failed)" if row.failed_runs else "")


def _reload(row: Any, metric: Metric) -> str:
    return "" if not row.seeds else ("yes" if row.reload_identical else "NO")


def _plain(name: str) -> Text:
    return lambda row, metric: value if isinstance(value := getattr(row, name), str) else ""


EVERYWHERE = frozenset(VIEWS)
#: Where the task's metrics other than the primary go (one column each, as the table's records have).
OTHER_METRICS = "other_metrics"
COLUMNS = [
    Column("rank", "rank", dtype="Int64", text=_rank, views=EVERYWHERE),
    Column("method", "method", text=_method, views=EVERYWHERE, sort=None, untrusted=True),
    Column("role", "role", dtype="string", text=_plain("role"), views=frozenset({SITE}), sort=None),
    Column("seeds", "seeds", dtype="Int64", text=_seeds, views=EVERYWHERE),
    Column("score", "{metric} (95% CI)", text=_score, views=EVERYWHERE),
    Column(
        "score_std",
        "SD",
        text=lambda row, m: m.number(row.score_std) if row.seeds > 1 else "",
        views=frozenset({ALL}),
        sort=None,
    ),  # fmt: skip
    Column(
        "tied_for_best",
        "★",
        text=lambda row, m: "★" if row.tied_for_best else "",
        views=EVERYWHERE,
        sort=None,
    ),  # fmt: skip
    Column(
        "flags",
        "flags",
        text=diagnostics.flags_text,
        views=frozenset({DEFAULT, ALL, SITE}),
        sort=None,
        optional=True,
    ),  # fmt: skip
    Column(OTHER_METRICS),
    Column("delta_vs_baseline", "Δ vs baseline (p)", text=_delta, views=EVERYWHERE),
    _cost(
        "trainable_params", "trainable params", "trainable_params", ",.0f", dtype="Int64", views=EVERYWHERE
    ),
    _cost("total_params", "", "total_params", ",.0f", dtype="Int64", views=frozenset()),
    _cost("trainable_percent", "trainable %", "trainable_percent", ".3f"),
    Column(
        "budget",
        "budget",
        dtype="string",
        text=_plain("budget"),
        views=frozenset({ALL}),
        sort=None,
        optional=True,
    ),  # fmt: skip
    _cost(
        "train_seconds",
        "train s",
        "train_seconds",
        ".1f",
        views=frozenset({DEFAULT, ALL, SITE, INDEX}),
        timing=True,
    ),
    _cost("feature_seconds", "features s", "feature_seconds", ".1f", optional=True, timing=True),
    Column(
        "samples_per_second",
        "samples/s",
        "costs.train_samples_per_second",
        spec=".1f",
        higher_is_better=True,
        timing=True,
    ),
    Column(
        "tokens_per_second",
        "tokens/s",
        "costs.train_tokens_per_second",
        spec=",.0f",
        higher_is_better=True,
        timing=True,
        views=frozenset({ALL}),
    ),  # fmt: skip
    _cost("eval_seconds", "eval s", "eval_seconds", ".1f", views=frozenset({ALL}), timing=True),
    _cost("peak_memory_mb", "peak MB", "peak_memory_mb", ",.0f", views=frozenset({ALL, SITE, INDEX})),
    Column(
        "mfu",
        "MFU %",
        "costs.model_flops_utilisation",
        spec=".1f",
        scale=100,
        higher_is_better=True,
        timing=True,
        views=frozenset({ALL}),
        optional=True,
    ),  # fmt: skip
    _cost("adapter_bytes", "adapter KB", "adapter_bytes", ",.1f", 1 / 1024, dtype="Int64"),
    _cost("adapter_load_seconds", "load ms", "adapter_load_seconds", ",.1f", 1000, timing=True),
    _cost(
        "latency_ms", "latency ms", "latency_ms", ",.2f", views=frozenset({DEFAULT, ALL, SITE}), timing=True
    ),
    _cost("merged_latency_ms", "merged latency ms", "merged_latency_ms", ",.2f", timing=True),
    Column("throughput", "throughput/s", "costs.throughput", spec=",.0f", higher_is_better=True, timing=True),
    Column(
        "merged_throughput",
        "merged throughput/s",
        "costs.merged_throughput",
        spec=",.0f",
        higher_is_better=True,
        timing=True,
    ),  # fmt: skip
    Column(
        "reload_identical",
        "reload identical",
        "reload.predictions_identical",
        dtype="boolean",
        text=_reload,
        sort=None,
    ),  # fmt: skip
    Column(
        "other_load",
        "other load",
        spec=".2f",
        views=frozenset({ALL, SITE}),
        optional=True,
    ),  # fmt: skip
    Column(
        "machine",
        "machine",
        dtype="string",
        text=_plain("machine"),
        views=frozenset({ALL, SITE}),
        sort=None,
        optional=True,
    ),  # fmt: skip
    Column("tuned", "tuned", dtype="string", text=_plain("tuned"), sort=None, untrusted=True),
    Column("source", "source", dtype="string", text=_plain("source"), sort=None, untrusted=True),
]
BY_NAME = {column.name: column for column in COLUMNS}
#: Costs read from each run's record and averaged over a row's seeds (counts stay whole numbers).
COSTS = [c for c in COLUMNS if c.source and c.source.startswith("costs.")]
COUNTS = [c.name for c in COSTS if c.dtype == "Int64"]
#: The columns the default view keeps as the terminal narrows, the first dropped first.
NARROWING = ["latency_ms", "train_seconds", "trainable_params", "tied_for_best", "rank"]


def metric_column(metric: Metric) -> Column:
    """The column of one of the task's other metrics (macro-F1 beside accuracy): its mean."""
    return Column(metric.name, metric.header, text=lambda row, m: metric.number(getattr(row, metric.name)),
                  optional=True)  # fmt: skip


def header(column: Column, metric: Metric) -> str:
    return column.header.format(metric=metric.header)


def table_columns(view: str, others: list[Metric], names: list[str] | None = None) -> list[Column]:
    """The columns of one table in ``view`` (or exactly ``names``, in the declared order), with the
    table's ``others`` metrics in their slot."""
    columns = []
    for column in COLUMNS:
        expanded = [metric_column(m) for m in others] if column.name == OTHER_METRICS else [column]
        for each in expanded:
            if each.name in names if names is not None else view in each.views:
                columns.append(each)
    return columns


def known_names(others: list[Metric]) -> list[str]:
    """What ``--columns`` accepts: every shown column's frame name."""
    return [c.name for c in table_columns(ALL, others) if c.header] + ["role"]
