"""The leaderboard for people: the columns every table shows, as Markdown (terminal) and CSV.

``COLUMNS`` is the one definition of what a leaderboard table shows and how each value is
written, ``aggregate_texts`` the same for the view over datasets; the terminal tables here and
the site's (``peftbench.docgen``) both use them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peftbench.formatting import escape, number, p_text
from peftbench.leaderboard import diagnostics
from peftbench.leaderboard.aggregate import CEILING, RANK_RESAMPLES
from peftbench.leaderboard.model import GROUP
from peftbench.leaderboard.stats import BOOTSTRAP_RESAMPLES, SIGNIFICANCE

LEGEND = (
    "accuracy: mean over seeds ± 95% Student-t interval (SD: standard deviation over seeds); "
    f"p: two-level paired bootstrap ({BOOTSTRAP_RESAMPLES:,} resamples), which draws test examples "
    "(the same for both rows) and each row's seeds, so it reflects both the test set's sampling "
    f"noise and the spread over seeds; ★ not significantly worse than the best (p ≥ {SIGNIFICANCE}); "
    "(at bound): the tuned value is the end of the range its key may be searched in; (at limit): "
    "the search stopped extending at the extension limit with the best value at the edge of those "
    "tried; (grid edge, records before 0.4): the tuned value is the end of the values tried; "
    f"{diagnostics.LEGEND}; "
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


@dataclass(frozen=True)
class Column:
    """One column of a leaderboard table: its header, its text per row, and what it sorts by."""

    header: str
    text: Callable[[Any], str]  # a row of the leaderboard frame -> plain (unescaped) text
    sort: str | None = None  # the frame column holding the numeric value to sort by
    untrusted: bool = False  # text from plugins and records (names, sources, values): escape it


def _numeric(header: str, column: str, spec: str, scale: float = 1.0) -> Column:
    return Column(header, lambda row: number(getattr(row, column), spec, scale), column)


def _accuracy(row) -> str:
    if not row.seeds:
        return "failed"
    interval = "" if pd.isna(row.accuracy_ci95) else f" ± {number(row.accuracy_ci95, '.2f', 100)}"
    return number(row.accuracy, ".2f", 100) + interval


def _delta(row) -> str:
    delta = number(row.delta_vs_baseline, "+.2f", 100)
    if not delta or row.role == "baseline" or pd.isna(row.p_vs_baseline):
        return delta
    return f"{delta} ({p_text(row.p_vs_baseline)})"


COLUMNS = [
    Column("rank", lambda row: "" if pd.isna(row.rank) else str(int(row.rank)), "rank"),
    Column(
        "method", lambda row: row.label + ("" if row.role == "method" else f" ({row.role})"), untrusted=True
    ),
    Column("source", lambda row: row.source, untrusted=True),
    Column(
        "seeds",
        lambda row: f"{row.seeds}" + (f" ({row.failed_runs} failed)" if row.failed_runs else ""),
        "seeds",
    ),
    Column("accuracy %", _accuracy, "accuracy"),
    Column("SD", lambda row: number(row.accuracy_std, ".2f", 100) if row.seeds > 1 else ""),
    Column("best", lambda row: "★" if row.tied_for_best else ""),
    Column("flags", diagnostics.flags_text),
    _numeric("macro-F1 %", "macro_f1", ".2f", 100),
    Column("Δ vs baseline", _delta, "delta_vs_baseline"),
    _numeric("trainable params", "trainable_params", ",.0f"),
    _numeric("trainable %", "trainable_percent", ".3f"),
    Column("budget", lambda row: row.budget if isinstance(row.budget, str) else ""),
    Column("tuned", lambda row: row.tuned if isinstance(row.tuned, str) else "", untrusted=True),
    _numeric("train s", "train_seconds", ".1f"),
    _numeric("features s", "feature_seconds", ".1f"),
    _numeric("samples/s", "samples_per_second", ".1f"),
    _numeric("tokens/s", "tokens_per_second", ",.0f"),
    _numeric("eval s", "eval_seconds", ".1f"),
    _numeric("peak MB", "peak_memory_mb", ",.0f"),
    _numeric("MFU %", "mfu", ".1f", 100),
    _numeric("adapter KB", "adapter_bytes", ",.1f", 1 / 1024),
    _numeric("load ms", "adapter_load_seconds", ",.1f", 1000),
    _numeric("latency ms", "latency_ms", ",.2f"),
    _numeric("throughput/s", "throughput", ",.0f"),
    _numeric("merged latency ms", "merged_latency_ms", ",.2f"),
    _numeric("merged throughput/s", "merged_throughput", ",.0f"),
    Column(
        "reload identical", lambda row: "" if not row.seeds else ("yes" if row.reload_identical else "NO")
    ),
]
#: Shown only where some row has a value (MFU is measured on GPUs only; budget only with --budget;
#: features s only for methods that train on the frozen model's features).
OPTIONAL = {"MFU %", "budget", "features s"}


def table_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column's plain text for each row of one (model, dataset) table, unescaped."""
    rows = [{column.header: column.text(row) for column in COLUMNS} for row in frame.itertuples(index=False)]
    shown = pd.DataFrame(rows, columns=[column.header for column in COLUMNS])
    empty = [header for header in OPTIONAL if shown[header].eq("").all()]
    return shown.drop(columns=empty)


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table per (model, dataset), readable in a terminal as it is."""
    if frame.empty:
        return "No run records found."
    parts = []
    for (model, dataset), group in frame.groupby(GROUP, sort=False):
        parts.append(f"### {escape(model, 'table')} on {escape(dataset, 'table')}\n")
        texts = table_texts(group)
        for column in COLUMNS:
            if column.untrusted:
                texts[column.header] = texts[column.header].map(lambda text: escape(text, "table"))
        parts.append(texts.to_markdown(index=False, disable_numparse=True))
        parts.append("")
    parts.append(LEGEND)
    return "\n".join(parts).rstrip() + "\n"


def csv(frame: pd.DataFrame, path: str | Path | None = None) -> str | None:
    """Every column of the frame; dicts and lists (per-seed values, run ids) as JSON text."""
    frame = frame.copy()
    for column in frame.columns[frame.map(lambda value: isinstance(value, dict | list)).any()]:
        frame[column] = frame[column].map(lambda value: json.dumps(value, default=_plain, sort_keys=True))
    return frame.to_csv(path, index=False)


AGGREGATE_LEGEND = (
    "A method's row on a dataset is its configuration with the best validation accuracy. "
    "mean rank: its rank by mean test accuracy on each dataset it ran on (1 is best; ties share "
    "the average rank), averaged over those datasets; a method missing on a dataset is not ranked "
    "there and nothing is imputed. [interval]: 2.5-97.5 percentiles of the mean rank when each "
    "dataset's test examples (the same for every method) and each method's seeds are resampled "
    f"({RANK_RESAMPLES:,} times) and ranked again: the noise within these datasets, not how a "
    "method would rank on others. W/T/L: wins, ties and losses against each other method on each "
    f"dataset, by the two-level paired bootstrap (significant: p < {SIGNIFICANCE}). gain share: "
    f"(method - baseline) / ({CEILING} - baseline) on each dataset, the share of full fine-tuning's "
    "gain over the untuned baseline the method recovers, averaged over the datasets that have both."
)


def aggregate_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """The plain (unescaped) text of one model's rows of ``Leaderboard.aggregate()``: a column
    per dataset with the method's test accuracy there, or ``missing``."""
    datasets = list(frame["accuracy_per_dataset"].iloc[0]) if len(frame) else []
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
            accuracy, label = row.accuracy_per_dataset[dataset], row.label_per_dataset[dataset]
            shown = number(accuracy, ".2f", 100) or "missing"
            texts[f"{dataset} %"] = shown + (f" ({label})" if label not in (None, row.method) else "")
        rows.append(texts)
    return pd.DataFrame(rows)


def aggregate_markdown(frame: pd.DataFrame) -> str:
    """A Markdown table per model over its datasets, readable in a terminal as it is."""
    if frame.empty:
        return "No model has results on two or more datasets: nothing to aggregate."
    parts = []
    for model, group in frame.groupby("model", sort=False):
        datasets = ", ".join(group["accuracy_per_dataset"].iloc[0])
        parts.append(f"### {escape(model, 'table')} over {escape(datasets, 'table')}\n")
        texts = aggregate_texts(group).map(lambda text: escape(text, "table"))
        texts.columns = [escape(column, "table") for column in texts.columns]
        parts += [texts.to_markdown(index=False, disable_numparse=True), ""]
    parts.append(AGGREGATE_LEGEND)
    return "\n".join(parts).rstrip() + "\n"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)
