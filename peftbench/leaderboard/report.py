"""The leaderboard for people: its tables as Markdown (terminal) and CSV.

What a table shows and how each value is written is declared once in ``columns``; this module
writes tables from those declarations (``table_texts``), names each table and its metric, and
does the same for the view over datasets (``aggregate_texts``). The site (``peftbench.docgen``)
uses the same texts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peftbench.errors import PeftbenchError
from peftbench.formatting import escape, number
from peftbench.leaderboard import diagnostics
from peftbench.leaderboard.aggregate import CEILING, RANK_RESAMPLES
from peftbench.leaderboard.columns import (
    ALL,
    BY_NAME,
    DEFAULT,
    NARROWING,
    VIEWS,
    Column,
    header,
    known_names,
    table_columns,
)
from peftbench.leaderboard.model import GROUP, metric_columns
from peftbench.leaderboard.stats import BOOTSTRAP_RESAMPLES, RECOMPUTED_RESAMPLES, SIGNIFICANCE
from peftbench.tasks.metrics import Metric, display_metric


def legend(metrics: list[Metric]) -> str:
    """What the columns of tables scored by ``metrics`` mean, in one paragraph."""
    titles = ", ".join(
        metric.title + ("" if metric.higher_is_better else " (lower is better)") for metric in metrics
    )
    return (
        f"{titles}: mean over seeds ± 95% Student-t interval (SD: standard deviation over seeds); "
        f"p: two-level paired bootstrap ({_resamples(metrics)} resamples), which draws test examples "
        "(the same for both rows) and each row's seeds, so it reflects both the test set's sampling "
        f"noise and the spread over seeds; ★ not significantly worse than the best (p ≥ {SIGNIFICANCE}); "
        "(at bound): the tuned value is the end of the range its key may be searched in; (at limit): "
        "the search stopped extending at the extension limit with the best value at the edge of those "
        "tried; (grid edge, records before 0.4): the tuned value is the end of the values tried; "
        f"{diagnostics.LEGEND}; {diagnostics.LOAD_LEGEND}; "
        "machine: the tag of the machine that ran the row's seeds (the hardware it names is in each "
        "page's setup): timings compare between rows run on the same machine; "
        "features s: the one pass of the frozen model over train and validation that the runs of methods "
        "training on its features share (computed once per dataset and sweep, not in train s, which is "
        "then the head's training alone); "
        "load ms: time to load the saved adapter onto a base model already in memory; "
        "latency ms: one test example per call (batch 1), the median of timed calls after warm-up; "
        "throughput/s: test examples per second at batch 64, likewise; "
        "merged latency ms, merged throughput/s: the same with the adapter folded into the base weights, "
        "blank for methods that cannot merge; any other blank cost was not measured (older records, "
        "--no-inference-timing)."
    )


def _resamples(metrics: list[Metric]) -> str:
    """How many resamples the paired bootstrap of these metrics draws (see ``paired_bootstrap``)."""
    counts = [BOOTSTRAP_RESAMPLES if m.per_example else RECOMPUTED_RESAMPLES for m in metrics]
    return " or ".join(f"{count:,}" for count in dict.fromkeys(counts))


def table_metric(frame: pd.DataFrame) -> Metric:
    """The primary metric of one table (every row of a table has the same)."""
    return display_metric(str(frame["metric"].iloc[0]), bool(frame["higher_is_better"].iloc[0]))


def other_metrics(frame: pd.DataFrame) -> list[Metric]:
    """The task's other metrics that some row of this table has (macro-F1 beside accuracy)."""
    primary = str(frame["metric"].iloc[0])
    return [
        display_metric(name) for name in metric_columns(frame)
        if name != primary and frame[name].notna().any()
    ]  # fmt: skip


def table_title(model: str, dataset: str, metric: Metric, several: bool) -> str:
    """``model on dataset``, naming the metric where the (model, dataset) has tables by several."""
    return f"{model} on {dataset}" + (f" ({metric.title})" if several else "")


def titles(frame: pd.DataFrame) -> dict[tuple, str]:
    """(model, dataset, metric) -> the title of its table."""
    counts = frame.groupby(["model", "dataset"])["metric"].nunique()
    return {
        (model, dataset, name): table_title(model, dataset, table_metric(group), counts[model, dataset] > 1)
        for (model, dataset, name), group in frame.groupby(GROUP, sort=False)
    }


def chosen_columns(frame: pd.DataFrame, columns: str | list[str]) -> list[Column]:
    """The columns of one table: a view's (``default``, ``all``, ``site``, ``index``) or those named."""
    others = other_metrics(frame)
    if isinstance(columns, str) and columns in VIEWS:
        chosen = table_columns(columns, others)
    else:
        names = [c.strip() for c in columns.split(",")] if isinstance(columns, str) else list(columns)
        known = known_names(others)
        unknown = [name for name in names if name not in known and name not in BY_NAME]
        if unknown:
            raise PeftbenchError(
                f"unknown column '{unknown[0]}'; known columns: {', '.join(known)} (or default, all)"
            )
        chosen = table_columns(ALL, others, ["method", *names])
    return chosen


def table_texts(frame: pd.DataFrame, columns: str | list[str] = ALL) -> pd.DataFrame:
    """Every chosen column's plain text for each row of one table, unescaped, under its header."""
    metric = table_metric(frame)
    chosen = chosen_columns(frame, columns)
    rows = [[column.shown(row, metric) for column in chosen] for row in frame.itertuples(index=False)]
    shown = pd.DataFrame(rows, columns=[header(column, metric) for column in chosen])
    empty = [header(c, metric) for c in chosen if c.optional and shown[header(c, metric)].eq("").all()]
    return shown.drop(columns=empty)


def markdown(frame: pd.DataFrame, columns: str | list[str] = ALL, width: int | None = None) -> str:
    """A Markdown table per (model, dataset, metric), readable in a terminal as it is; the default
    view drops its least deciding columns until each table fits ``width`` characters."""
    if frame.empty:
        return "No run records found."
    parts, metrics = [], []
    for key, group in frame.groupby(GROUP, sort=False):
        parts.append(f"### {escape(titles(frame)[key], 'table')}\n")
        metric = table_metric(group)
        if metric.name not in [m.name for m in metrics]:
            metrics.append(metric)
        texts = table_texts(group, columns)
        for column in chosen_columns(group, columns):
            if column.untrusted and header(column, metric) in texts:
                texts[header(column, metric)] = texts[header(column, metric)].map(
                    lambda t: escape(t, "table")
                )
        table, dropped = _fitted(texts, width if columns == DEFAULT else None, metric)
        parts += [table, ""]
        if dropped:
            left_out = ", ".join(dropped)
            parts += [f"(left out to fit {width} characters: {left_out}; --columns all shows them)", ""]
    parts.append(legend(metrics))
    return "\n".join(parts).rstrip() + "\n"


def _fitted(texts: pd.DataFrame, width: int | None, metric: Metric) -> tuple[str, list[str]]:
    """The table as Markdown, its least deciding columns dropped until it fits ``width``."""
    dropped = []
    narrowing = [header(BY_NAME[name], metric) for name in NARROWING]
    while True:
        table = texts.to_markdown(index=False, disable_numparse=True)
        widest = max(len(line) for line in table.splitlines())
        left = [h for h in narrowing if h in texts.columns]
        if width is None or widest <= width or not left:
            return table, dropped
        texts = texts.drop(columns=left[0])
        dropped.append(left[0])


def csv(frame: pd.DataFrame, path: str | Path | None = None) -> str | None:
    """Every column of the frame; dicts and lists (per-seed values, run ids) as JSON text."""
    frame = frame.copy()
    for column in frame.columns[frame.map(lambda value: isinstance(value, dict | list)).any()]:
        frame[column] = frame[column].map(lambda value: json.dumps(value, default=_plain, sort_keys=True))
    return frame.to_csv(path, index=False)


AGGREGATE_LEGEND = (
    "Datasets trained on their whole training split only (a fixed subset, NAME[train=N], is left "
    "out). Each dataset is scored by its table's primary metric, in that metric's direction (named in its "
    "column). A method's row on a dataset is its configuration with the best validation score. "
    "mean rank: its rank by mean test score on each dataset it ran on (1 is best; ties share "
    "the average rank), averaged over those datasets; a method missing on a dataset, or whose test score "
    "there is undefined (a rank correlation of constant predictions), is not ranked there and nothing "
    "is imputed. [interval]: 2.5-97.5 percentiles of the mean rank when each "
    "dataset's test examples (the same for every method) and each method's seeds are resampled "
    f"({RANK_RESAMPLES:,} times) and ranked again: the noise within these datasets, not how a "
    "method would rank on others. W/T/L: wins, ties and losses against each other method on each "
    f"dataset, by the two-level paired bootstrap (significant: p < {SIGNIFICANCE}). gain share: "
    f"(method - baseline) / ({CEILING} - baseline) on each dataset, the share of full fine-tuning's "
    "gain over the untuned baseline the method recovers, averaged over the datasets where full "
    "fine-tuning beats the baseline significantly (a share of a gain within noise is noise magnified)."
)


def dataset_header(dataset: str, metric: Metric) -> str:
    """The aggregate's column of one dataset: its name and metric (``emotion accuracy %``)."""
    return f"{dataset} {metric.header}"


def aggregate_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """The plain (unescaped) text of one model's rows of ``Leaderboard.aggregate()``: a column
    per dataset with the method's test score there in the dataset's metric, or ``missing``."""
    datasets = list(frame["score_per_dataset"].iloc[0]) if len(frame) else []
    metrics = {d: display_metric(frame["metric_per_dataset"].iloc[0][d]) for d in datasets}
    rows = []
    for row in frame.itertuples(index=False):
        wtl = f"{row.wins}/{row.ties}/{row.losses}" + (f" ({row.untested} untested)" if row.untested else "")
        gain = number(row.gain_share, ".1f", 100) or "missing"
        if gain != "missing" and row.gain_share_datasets < row.datasets_total:
            gain += f" ({row.gain_share_datasets} of {row.datasets_total})"
        rank = f"{row.mean_rank:.2f} [{row.mean_rank_low:.2f}, {row.mean_rank_high:.2f}]"
        texts = {
            "method": row.method + ("" if row.role == "method" else f" ({row.role})"),
            "datasets": f"{row.datasets} of {row.datasets_total}",
            "mean rank [95% interval]": rank,
            "W/T/L": wtl,
            "gain share %": gain,
        }
        for dataset in datasets:
            score, label = row.score_per_dataset[dataset], row.label_per_dataset[dataset]
            shown = metrics[dataset].number(score) or "missing"
            texts[dataset_header(dataset, metrics[dataset])] = shown + (
                f" ({label})" if label not in (None, row.method) else ""
            )
        rows.append(texts)
    return pd.DataFrame(rows)


def aggregate_markdown(frame: pd.DataFrame) -> str:
    """A Markdown table per model over its datasets, readable in a terminal as it is."""
    if frame.empty:
        return "No model has results on two or more datasets: nothing to aggregate."
    parts = []
    for model, group in frame.groupby("model", sort=False):
        datasets = ", ".join(group["score_per_dataset"].iloc[0])
        parts.append(f"### {escape(model, 'table')} over {escape(datasets, 'table')}\n")
        texts = aggregate_texts(group).map(lambda text: escape(text, "table"))
        texts.columns = [escape(column, "table") for column in texts.columns]
        parts += [texts.to_markdown(index=False, disable_numparse=True), ""]
    parts.append(AGGREGATE_LEGEND)
    return "\n".join(parts).rstrip() + "\n"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)
