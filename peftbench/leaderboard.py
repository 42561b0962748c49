"""Records -> pandas DataFrame -> Markdown/CSV. A pure function of the records, nothing else.

One row per (model, dataset, method, configuration), over the seeds that completed: mean test
accuracy with a Student-t 95% interval, and paired bootstrap p-values against the untuned
baseline and against the best row on the same test examples. Failed runs are counted and shown,
never averaged in. Tuning candidates (scored on validation only) are not leaderboard rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from peftbench.records import RunRecord, read_records, run_key
from peftbench.stats import SIGNIFICANCE, mean_and_ci, paired_bootstrap

RUN_COLUMNS = {
    "model": "string",
    "dataset": "string",
    "method": "string",
    "config": "string",
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
    "samples_per_second": "Float64",
    "tokens_per_second": "Float64",
    "eval_seconds": "Float64",
    "peak_memory_mb": "Float64",
    "adapter_bytes": "Int64",
    "reload_identical": "boolean",
    "tuned": "string",
    "error": "string",
}
COST_COLUMNS = [
    "trainable_params", "total_params", "trainable_percent", "train_seconds", "samples_per_second",
    "tokens_per_second", "eval_seconds", "peak_memory_mb", "adapter_bytes",
]  # fmt: skip
FRAME_COLUMNS = [
    "rank", "model", "dataset", "method", "role", "source", "seeds", "failed_runs", "accuracy",
    "accuracy_std", "accuracy_ci95", "accuracy_per_seed", "macro_f1", "loss", "delta_vs_baseline",
    "p_vs_baseline", "delta_vs_best", "p_vs_best", "tied_for_best", "validation_accuracy", "tuned",
    *COST_COLUMNS, "reload_identical",
]  # fmt: skip
GROUP = ["model", "dataset"]
KEYS = ["model", "dataset", "method", "config"]


class Leaderboard:
    """The leaderboard of a set of run records."""

    def __init__(self, records: Iterable[RunRecord]) -> None:
        self.records = list(records)
        self._final = [r for r in self.records if r.stage == "final"]

    @classmethod
    def from_dir(cls, out: str | Path) -> Leaderboard:
        return cls(read_records(Path(out)))

    def runs_frame(self) -> pd.DataFrame:
        """One row per final run (per seed), with explicit dtypes: the per-seed values."""
        rows = [_run_row(record) for record in self._final]
        return pd.DataFrame(rows, columns=list(RUN_COLUMNS)).astype(RUN_COLUMNS)

    def to_frame(self) -> pd.DataFrame:
        """One row per method configuration and (model, dataset), best mean accuracy first."""
        return self._frame.copy()

    @functools.cached_property
    def _frame(self) -> pd.DataFrame:
        runs = self.runs_frame()
        if runs.empty:
            return pd.DataFrame(columns=FRAME_COLUMNS)
        rows = [self._row(key, group) for key, group in runs.groupby(KEYS, sort=False)]
        table = pd.DataFrame(rows)
        table["method"] = display_names(table)
        parts = [self._compare(group) for _, group in table.groupby(GROUP, sort=False)]
        table = pd.concat(parts).sort_values(
            [*GROUP, "accuracy"], ascending=[True, True, False], na_position="last"
        )
        table["rank"] = table.groupby(GROUP)["accuracy"].rank(ascending=False, method="min").astype("Int64")
        return table[FRAME_COLUMNS].reset_index(drop=True)

    def _row(self, key: tuple, group: pd.DataFrame) -> dict:
        done = group[group["status"] == "complete"]
        mean, std, half = mean_and_ci(done["accuracy"].astype(float).tolist())
        row = dict(zip(KEYS, key, strict=True))
        row.update(
            role=group["role"].iloc[0],
            source=group["source"].iloc[0],
            seeds=len(done),
            failed_runs=int((group["status"] != "complete").sum()),
            accuracy=mean,
            accuracy_std=std,
            accuracy_ci95=half,
            accuracy_per_seed=dict(
                zip(done["seed"].astype(int), done["accuracy"].astype(float), strict=True)
            ),
            macro_f1=done["macro_f1"].astype(float).mean(),
            loss=done["loss"].astype(float).mean(),
            validation_accuracy=done["validation_accuracy"].astype(float).mean(),
            tuned=group["tuned"].iloc[0],
            reload_identical=bool(done["reload_identical"].fillna(False).all()) if len(done) else pd.NA,
        )
        for column in COST_COLUMNS:
            row[column] = done[column].astype(float).mean() if len(done) else np.nan
        row["_correct"] = self._correctness(key)
        return row

    def _correctness(self, key: tuple) -> np.ndarray | None:
        """Per test example, the share of completed seeds that got it right (None if unknown)."""
        model, dataset, method, config = key
        rows = [
            np.asarray(r.predictions) == np.asarray(r.references)
            for r in self._final
            if (r.model, r.dataset, r.method, config_key(r)) == key and r.status == "complete"
            and r.predictions and len(r.predictions) == len(r.references)
        ]  # fmt: skip
        if not rows or len({len(row) for row in rows}) != 1:
            return None
        return np.mean(rows, axis=0)

    @staticmethod
    def _compare(group: pd.DataFrame) -> pd.DataFrame:
        """Δ and paired-bootstrap p-values against the baseline and the best row of one table."""
        group = group.copy()
        completed = group[group["seeds"] > 0]
        baseline = completed[completed["role"] == "baseline"]
        best = completed.loc[completed["accuracy"].idxmax()] if len(completed) else None
        anchor = baseline.iloc[0] if len(baseline) else None
        for column in ("delta_vs_baseline", "p_vs_baseline", "delta_vs_best", "p_vs_best"):
            group[column] = np.nan
        group["tied_for_best"] = False
        for index, row in group.iterrows():
            if row["seeds"] == 0:
                continue
            if anchor is not None:
                group.at[index, "delta_vs_baseline"] = row["accuracy"] - anchor["accuracy"]
                group.at[index, "p_vs_baseline"] = _p_value(row["_correct"], anchor["_correct"])
            group.at[index, "delta_vs_best"] = row["accuracy"] - best["accuracy"]
            p_best = 1.0 if index == best.name else _p_value(row["_correct"], best["_correct"])
            group.at[index, "p_vs_best"] = p_best
            group.at[index, "tied_for_best"] = bool(p_best >= SIGNIFICANCE) if not np.isnan(p_best) else False
        return group.drop(columns="_correct")

    def to_markdown(self) -> str:
        """A Markdown table per (model, dataset), formatted for people."""
        frame = self.to_frame()
        if frame.empty:
            return "No run records found."
        parts = []
        for (model, dataset), group in frame.groupby(GROUP, sort=False):
            parts.append(f"### {escape(model)} on {escape(dataset)}\n")
            parts.append(format_table(group).to_markdown(index=False, disable_numparse=True))
            parts.append("")
        parts.append(LEGEND)
        return "\n".join(parts).rstrip() + "\n"

    def to_csv(self, path: str | Path | None = None) -> str | None:
        return self.to_frame().to_csv(path, index=False)


LEGEND = (
    "accuracy: mean over seeds ± 95% Student-t interval; p: paired bootstrap over test examples "
    f"(10,000 resamples); ★ not significantly worse than the best (p ≥ {SIGNIFICANCE})."
)


def _p_value(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None or len(a) != len(b):
        return np.nan
    return paired_bootstrap(a, b).p_value


def config_key(record: RunRecord) -> str:
    """What tells two configurations of one method apart: its hyper-parameters and training settings."""
    return run_key({"hp": record.hyperparameters, "train": record.train_config})


def _run_row(record: RunRecord) -> dict:
    m, c = record.metrics, record.costs
    chosen = (record.tuning or {}).get("chosen") or {}
    return {
        "model": record.model,
        "dataset": record.dataset,
        "method": record.method,
        "config": config_key(record),
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
        "samples_per_second": c.get("train_samples_per_second"),
        "tokens_per_second": c.get("train_tokens_per_second"),
        "eval_seconds": c.get("eval_seconds"),
        "peak_memory_mb": c.get("peak_memory_mb"),
        "adapter_bytes": c.get("adapter_bytes"),
        "reload_identical": record.reload.get("predictions_identical"),
        "tuned": ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in chosen.items()),
        "error": record.error,
    }


def display_names(table: pd.DataFrame) -> pd.Series:
    """A method run with several configurations gets its config key appended to tell them apart."""
    counts = table.groupby(["model", "dataset", "method"])["config"].transform("nunique")
    return table["method"].where(counts == 1, table["method"] + "#" + table["config"].str[:6])


def format_table(group: pd.DataFrame) -> pd.DataFrame:
    """The human-readable columns of one (model, dataset) table."""

    def num(value, spec):
        return "" if pd.isna(value) else format(value, spec)

    rows = []
    for row in group.itertuples(index=False):
        failed = f" ({row.failed_runs} failed)" if row.failed_runs else ""
        interval = "" if pd.isna(row.accuracy_ci95) else f" ± {100 * row.accuracy_ci95:.2f}"
        delta = num(100 * row.delta_vs_baseline if not pd.isna(row.delta_vs_baseline) else np.nan, "+.2f")
        p_value = (
            "" if pd.isna(row.p_vs_baseline) or row.role == "baseline" else f" ({p_text(row.p_vs_baseline)})"
        )
        rows.append(
            {
                "rank": "" if pd.isna(row.rank) else int(row.rank),
                "method": escape(row.method) + ("" if row.role == "method" else f" ({row.role})"),
                "source": escape(row.source),
                "seeds": f"{row.seeds}{failed}",
                "accuracy %": num(100 * row.accuracy, ".2f") + interval if row.seeds else "failed",
                "best": "★" if row.tied_for_best else "",
                "macro-F1 %": num(100 * row.macro_f1, ".2f"),
                "Δ vs baseline": delta + p_value if delta else "",
                "trainable params": num(row.trainable_params, ",.0f"),
                "trainable %": num(row.trainable_percent, ".3f"),
                "tuned": escape(row.tuned) if isinstance(row.tuned, str) else "",
                "train s": num(row.train_seconds, ".1f"),
                "samples/s": num(row.samples_per_second, ".1f"),
                "tokens/s": num(row.tokens_per_second, ",.0f"),
                "peak MB": num(row.peak_memory_mb, ",.0f"),
                "adapter KB": num(
                    row.adapter_bytes / 1024 if not pd.isna(row.adapter_bytes) else np.nan, ",.1f"
                ),
                "reload identical": "" if not row.seeds else ("yes" if row.reload_identical else "NO"),
            }
        )
    return pd.DataFrame(rows)


def p_text(p: float) -> str:
    """A bootstrap p-value as people should read it: 0 resamples against means below 1/1000, not 0."""
    return "p<0.001" if p < 0.0005 else f"p={p:.3f}"


def escape(text: object) -> str:
    """Names come from plugins and datasets: keep them from turning into Markdown/HTML markup."""
    value = "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)
    for char, replacement in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        value = value.replace(char, replacement)
    return value
