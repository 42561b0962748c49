"""Records -> the leaderboard's data: one pandas frame per view to read, a pure function of records.

One row per (model, dataset, method, configuration), over the seeds that completed: mean test
accuracy with a Student-t 95% interval, and two-level paired bootstrap p-values against the
untuned baseline and against the best row on the same test examples. Failed runs are counted and
shown, never averaged in. Tuning candidates (scored on validation only) are not leaderboard rows.

The frame keeps the raw method name, its hyper-parameters, the run ids and the per-seed values
next to a display ``label``, so the terminal table, the CSV and the site are views on it and
never parse a display string back.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peftbench.formatting import budget_text, hp_text
from peftbench.leaderboard import diagnostics
from peftbench.leaderboard.configurations import RUN_IDENTITY, config_key, edge_notes, variant_labels
from peftbench.leaderboard.curves import curves_frame
from peftbench.leaderboard.stats import SIGNIFICANCE, mean_and_ci, paired_bootstrap
from peftbench.records import RunRecord, read_records

#: Inference costs (``peftbench.inference_cost``), under the record's own keys: absent from records
#: older than them, from runs not timed and, for the merged ones, from methods that cannot merge.
INFERENCE_COLUMNS = [
    "adapter_load_seconds", "latency_ms", "throughput", "merged_latency_ms", "merged_throughput",
]  # fmt: skip
RUN_COLUMNS = {
    **RUN_IDENTITY,
    "dataset_fingerprint": "string",
    "role": "string",
    "source": "string",
    "seed": "Int64",
    "status": "string",
    "accuracy": "Float64",
    "macro_f1": "Float64",
    "loss": "Float64",
    "validation_accuracy": "Float64",
    "trainable_params": "Int64",
    "total_params": "Int64",
    "trainable_percent": "Float64",
    "train_seconds": "Float64",
    "feature_seconds": "Float64",
    "samples_per_second": "Float64",
    "tokens_per_second": "Float64",
    "eval_seconds": "Float64",
    "peak_memory_mb": "Float64",
    "adapter_bytes": "Int64",
    "mfu": "Float64",
    **dict.fromkeys(INFERENCE_COLUMNS, "Float64"),
    "reload_identical": "boolean",
    "tuned": "string",
    "budget": "string",
    "error": "string",
}
COST_COLUMNS = [
    "trainable_params", "total_params", "trainable_percent", "train_seconds", "feature_seconds",
    "samples_per_second", "tokens_per_second", "eval_seconds", "peak_memory_mb", "adapter_bytes", "mfu",
    *INFERENCE_COLUMNS,
]  # fmt: skip
FRAME_COLUMNS = [
    "rank", "model", "dataset", "method", "label", "role", "source", "seeds", "failed_runs", "accuracy",
    "accuracy_std", "accuracy_ci95", "accuracy_per_seed", "macro_f1", "loss", "delta_vs_baseline",
    "p_vs_baseline", "delta_vs_best", "p_vs_best", "tied_for_best", *diagnostics.COLUMNS,
    "validation_accuracy", "tuned", "tuned_values", "hyperparameters", *COST_COLUMNS, "budget",
    "reload_identical", "run_ids", "config", "dataset_fingerprint", "method_metrics",
]  # fmt: skip
#: Dicts, kept as they are in the records; ``method_metrics`` (what a method reports about itself,
#: ``Method.report``) is averaged over the completed seeds in ``to_frame``.
OBJECT_COLUMNS = ["tuned_values", "hyperparameters", "method_metrics"]
#: Counts, equal for every seed of one configuration: whole numbers in the frame too.
COUNT_COLUMNS = ["trainable_params", "total_params", "adapter_bytes"]
GROUP = ["model", "dataset"]
KEYS = ["model", "dataset", "method", "config"]


class Leaderboard:
    """The leaderboard of a set of run records."""

    def __init__(self, records: Iterable[RunRecord], incomplete: Iterable[RunRecord] | None = None) -> None:
        self.records = list(records)
        # The final runs that did not complete, of the sweep that made this board (None: a folder
        # read as it is; then every final run on record that did not complete).
        self._incomplete = None if incomplete is None else list(incomplete)
        self.final = _latest_per_seed(r for r in self.records if r.stage == "final")
        self._labels = variant_labels(self.final)

    @classmethod
    def from_dir(cls, out: str | Path) -> Leaderboard:
        return cls(read_records(Path(out)))

    def incomplete_runs(self) -> list[RunRecord]:
        """Final runs that failed or diverged: of the sweep that made this board, else of all."""
        if self._incomplete is not None:
            return list(self._incomplete)
        return [r for r in self.records if r.stage == "final" and r.status != "complete"]

    def label(self, record: RunRecord) -> str:
        """What the board calls a final record's row: its method, plus what differs if it has variants."""
        return self._labels[record.run_id]

    def runs_frame(self) -> pd.DataFrame:
        """One row per final run (per seed), with explicit dtypes: the per-seed values."""
        rows = [_run_row(record, self.label(record)) for record in self.final]
        frame = pd.DataFrame(rows, columns=[*RUN_COLUMNS, *OBJECT_COLUMNS]).astype(RUN_COLUMNS)
        return frame

    def curves_frame(self) -> pd.DataFrame:
        """Learning curves of the completed final runs: a row per (run, series, step, value)."""
        return curves_frame(self.final, self.label, config_key)

    def to_frame(self) -> pd.DataFrame:
        """One row per method configuration and (model, dataset), best mean accuracy first."""
        return self._frame.copy()

    def aggregate(self) -> pd.DataFrame:
        """Per model with results on 2+ datasets, one row per method: mean rank (with a seed- and
        test-example-bootstrap interval), wins/ties/losses, share of full fine-tuning's gain."""
        from peftbench.leaderboard.aggregate import aggregate

        return aggregate(self)

    def to_markdown(self) -> str:
        """A Markdown table per (model, dataset), formatted for people (and terminals)."""
        from peftbench.leaderboard.report import markdown

        return markdown(self.to_frame())

    def to_csv(self, path: str | Path | None = None) -> str | None:
        """Every column of ``to_frame``; dicts and lists (per-seed values, run ids) as JSON."""
        from peftbench.leaderboard.report import csv

        return csv(self.to_frame(), path)

    @functools.cached_property
    def _frame(self) -> pd.DataFrame:
        runs = self.runs_frame()
        if runs.empty:
            return pd.DataFrame(columns=FRAME_COLUMNS)
        by_key: dict[tuple, list[RunRecord]] = {}
        for record in self.final:
            by_key.setdefault((record.model, record.dataset, record.method, config_key(record)), []).append(
                record
            )
        rows = [_row(key, group, by_key[key]) for key, group in runs.groupby(KEYS, sort=False)]
        table = pd.DataFrame(rows)
        parts = [_compare(group) for _, group in table.groupby(GROUP, sort=False)]
        table = pd.concat(parts).sort_values(
            [*GROUP, "accuracy"], ascending=[True, True, False], na_position="last"
        )
        table["rank"] = table.groupby(GROUP)["accuracy"].rank(ascending=False, method="min").astype("Int64")
        table[COUNT_COLUMNS] = table[COUNT_COLUMNS].round().astype("Int64")
        table = table.astype({k: v for k, v in diagnostics.COLUMNS.items() if v != "object"})
        return table[FRAME_COLUMNS].reset_index(drop=True)


def _row(key: tuple, group: pd.DataFrame, records: list[RunRecord]) -> dict[str, Any]:
    done = group[group["status"] == "complete"]
    mean, std, half = mean_and_ci(done["accuracy"].astype(float).tolist())
    row = dict(zip(KEYS, key, strict=True))
    row.update(
        label=group["label"].iloc[0],
        dataset_fingerprint=group["dataset_fingerprint"].iloc[0],
        role=group["role"].iloc[0],
        source=group["source"].iloc[0],
        seeds=len(done),
        failed_runs=int((group["status"] != "complete").sum()),
        accuracy=mean,
        accuracy_std=std,
        accuracy_ci95=half,
        accuracy_per_seed=dict(
            zip(done["seed"].astype(int).tolist(), done["accuracy"].astype(float).tolist(), strict=True)
        ),
        macro_f1=done["macro_f1"].astype(float).mean(),
        loss=done["loss"].astype(float).mean(),
        validation_accuracy=done["validation_accuracy"].astype(float).mean(),
        tuned=group["tuned"].iloc[0],
        budget=group["budget"].iloc[0],
        tuned_values=group["tuned_values"].iloc[0],
        hyperparameters=group["hyperparameters"].iloc[0],
        run_ids=sorted(group["run_id"]),
        reload_identical=bool(done["reload_identical"].fillna(False).all()) if len(done) else pd.NA,
        method_metrics=_mean_of_dicts(done["method_metrics"]),
    )
    for column in COST_COLUMNS:
        row[column] = done[column].astype(float).mean() if len(done) else np.nan
    row["_correct"] = correctness(records)
    row.update(_diagnose(records, row))
    return row


def _diagnose(records: list[RunRecord], row: dict[str, Any]) -> dict[str, Any]:
    """The row's flags (``diagnostics``), from its completed runs' curves and test results."""
    series = diagnostics.VALIDATION_CURVE
    done = [record for record in records if record.status == "complete"]
    curves = {r.seed: (r.curves.get(series), r.metrics.get(series)) for r in done}
    return diagnostics.diagnose(curves, list(row["accuracy_per_seed"].values()), row["_correct"])


def _mean_of_dicts(values: pd.Series) -> dict[str, float]:
    """Per key, the mean over the runs that reported a number for it."""
    means = {}
    for key in sorted({key for numbers in values for key in numbers}):
        reported = [n[key] for n in values if n.get(key) is not None]
        means[key] = float(np.mean(reported)) if reported else float("nan")
    return means


def correctness(records: list[RunRecord]) -> np.ndarray | None:
    """Per completed seed and test example, 1 if the prediction was right (None if unknown)."""
    rows = [
        np.asarray(r.predictions) == np.asarray(r.references)
        for r in records
        if r.status == "complete" and r.predictions and len(r.predictions) == len(r.references)
    ]
    if not rows or len({len(row) for row in rows}) != 1:
        return None
    return np.asarray(rows, dtype=float)


def _compare(group: pd.DataFrame) -> pd.DataFrame:
    """Δ and paired-bootstrap p-values against the baseline and the best row of one table.

    Rows are only compared with rows on the same data (same dataset fingerprint): a dataset
    that changed under the same name is a different test set.
    """
    group = group.copy()
    for column in ("delta_vs_baseline", "p_vs_baseline", "delta_vs_best", "p_vs_best"):
        group[column] = np.nan
    group["tied_for_best"] = False
    for index, row in group.iterrows():
        if row["seeds"] == 0:
            continue
        same_data = group[(group["seeds"] > 0) & (group["dataset_fingerprint"] == row["dataset_fingerprint"])]
        baselines = same_data[same_data["role"] == "baseline"].sort_values("seeds", ascending=False)
        best = same_data.loc[same_data["accuracy"].idxmax()]
        if len(baselines):
            anchor = baselines.iloc[0]
            group.at[index, "delta_vs_baseline"] = row["accuracy"] - anchor["accuracy"]
            group.at[index, "p_vs_baseline"] = _p_value(row["_correct"], anchor["_correct"])
        group.at[index, "delta_vs_best"] = row["accuracy"] - best["accuracy"]
        p_best = 1.0 if index == best.name else _p_value(row["_correct"], best["_correct"])
        group.at[index, "p_vs_best"] = p_best
        group.at[index, "tied_for_best"] = bool(p_best >= SIGNIFICANCE) if not np.isnan(p_best) else False
    return group.drop(columns="_correct")


def _p_value(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None or a.shape[1] != b.shape[1]:
        return np.nan
    return paired_bootstrap(a, b).p_value


def _latest_per_seed(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per configuration and seed (the last finished), so no seed counts twice."""
    latest: dict[tuple, RunRecord] = {}
    for record in records:
        key = (record.model, record.dataset, record.method, config_key(record), record.seed)
        if key not in latest or record.finished_at >= latest[key].finished_at:
            latest[key] = record
    return list(latest.values())


def _run_row(record: RunRecord, label: str) -> dict[str, Any]:
    m, c = record.metrics, record.costs
    chosen = (record.tuning or {}).get("chosen") or {}
    return {
        "model": record.model,
        "dataset": record.dataset,
        "method": record.method,
        "label": label,
        "config": config_key(record),
        "run_id": record.run_id,
        "dataset_fingerprint": record.dataset_fingerprint,
        "role": record.role,
        "source": record.method_source,
        "seed": record.seed,
        "status": record.status,
        "accuracy": m.get("accuracy"),
        "macro_f1": m.get("macro_f1"),
        "loss": m.get("loss"),
        "validation_accuracy": m.get("validation_accuracy"),
        "trainable_params": c.get("trainable_params"),
        "total_params": c.get("total_params"),
        "trainable_percent": c.get("trainable_percent"),
        "train_seconds": c.get("train_seconds"),
        "feature_seconds": c.get("feature_seconds"),
        "samples_per_second": c.get("train_samples_per_second"),
        "tokens_per_second": c.get("train_tokens_per_second"),
        "eval_seconds": c.get("eval_seconds"),
        "peak_memory_mb": c.get("peak_memory_mb"),
        "adapter_bytes": c.get("adapter_bytes"),
        "mfu": c.get("model_flops_utilisation"),
        **{column: c.get(column) for column in INFERENCE_COLUMNS},
        "reload_identical": record.reload.get("predictions_identical"),
        "tuned": hp_text(chosen, edge_notes(record.tuning)),
        "tuned_values": dict(chosen),
        "budget": budget_text(record.budget),
        "error": record.error,
        "hyperparameters": dict(record.hyperparameters),
        "method_metrics": dict(record.method_metrics),
    }
