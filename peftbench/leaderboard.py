"""Records -> pandas DataFrame -> Markdown/CSV. A pure function of the records, nothing else.

One row per (model, dataset, method, configuration), averaged over the seeds that completed;
failed runs are counted and shown, never averaged in. Deltas are against the untuned baseline
of the same model and dataset, evaluated by the same code on the same split.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from peftbench.records import RunRecord, read_records, run_key

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
    "error": "string",
}
MEAN_COLUMNS = [
    "accuracy", "macro_f1", "loss", "validation_accuracy", "trainable_percent", "train_seconds",
    "samples_per_second", "tokens_per_second", "eval_seconds", "peak_memory_mb",
]  # fmt: skip
FIRST_COLUMNS = ["role", "source", "trainable_params", "total_params", "adapter_bytes"]


class Leaderboard:
    """The leaderboard of a set of run records."""

    def __init__(self, records: Iterable[RunRecord]) -> None:
        self.records = list(records)

    @classmethod
    def from_dir(cls, out: str | Path) -> Leaderboard:
        return cls(read_records(Path(out)))

    def runs_frame(self) -> pd.DataFrame:
        """One row per run (per seed), with explicit dtypes."""
        rows = [_run_row(record) for record in self.records]
        return pd.DataFrame(rows, columns=list(RUN_COLUMNS)).astype(RUN_COLUMNS)

    def to_frame(self) -> pd.DataFrame:
        """One row per method configuration and (model, dataset), best mean accuracy first."""
        runs = self.runs_frame()
        if runs.empty:
            return pd.DataFrame(columns=["rank", "model", "dataset", "method", *FIRST_COLUMNS, "seeds"])
        keys = ["model", "dataset", "method", "config"]
        done = runs[runs["status"] == "complete"]
        grouped = done.groupby(keys, sort=False)
        table = grouped[MEAN_COLUMNS].mean()
        table["accuracy_std"] = grouped["accuracy"].std(ddof=1)
        table["seeds"] = grouped.size()
        table["reload_identical"] = grouped["reload_identical"].all()
        table = table.join(grouped[FIRST_COLUMNS].first())
        everything = runs.groupby(keys, sort=False)
        table = (
            everything[["role", "source"]].first().join(table.drop(columns=["role", "source"]), how="left")
        )
        table["failed_runs"] = everything["status"].apply(lambda s: int((s != "complete").sum()))
        table["seeds"] = table["seeds"].fillna(0).astype("Int64")
        table = table.reset_index()
        table["method"] = _display_names(table)
        table["delta_vs_baseline"] = _deltas(table)
        table = table.sort_values(
            ["model", "dataset", "accuracy"], ascending=[True, True, False], na_position="last"
        )
        table["rank"] = table.groupby(["model", "dataset"])["accuracy"].rank(ascending=False, method="min")
        table["rank"] = table["rank"].astype("Int64")
        order = [
            "rank", "model", "dataset", "method", "role", "source", "seeds", "failed_runs", "accuracy",
            "accuracy_std", "macro_f1", "loss", "delta_vs_baseline", "validation_accuracy",
            "trainable_params", "total_params", "trainable_percent", "train_seconds",
            "samples_per_second", "tokens_per_second", "eval_seconds", "peak_memory_mb",
            "adapter_bytes", "reload_identical",
        ]  # fmt: skip
        return table[order].reset_index(drop=True)

    def to_markdown(self) -> str:
        """A Markdown table per (model, dataset), formatted for people."""
        frame = self.to_frame()
        if frame.empty:
            return "No run records found."
        parts = []
        for (model, dataset), group in frame.groupby(["model", "dataset"], sort=False):
            parts.append(f"### {_escape(model)} on {_escape(dataset)}\n")
            parts.append(_format(group).to_markdown(index=False))
            parts.append("")
        return "\n".join(parts).rstrip() + "\n"

    def to_csv(self, path: str | Path | None = None) -> str | None:
        return self.to_frame().to_csv(path, index=False)


def _run_row(record: RunRecord) -> dict:
    m, c = record.metrics, record.costs
    config = run_key({"hp": record.hyperparameters, "train": record.train_config})
    return {
        "model": record.model,
        "dataset": record.dataset,
        "method": record.method,
        "config": config,
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
        "error": record.error,
    }


def _display_names(table: pd.DataFrame) -> pd.Series:
    """A method run with several configurations gets its config key appended to tell them apart."""
    counts = table.groupby(["model", "dataset", "method"])["config"].transform("nunique")
    return table["method"].where(counts == 1, table["method"] + "#" + table["config"].str[:6])


def _deltas(table: pd.DataFrame) -> pd.Series:
    baseline = table[table["role"] == "baseline"].groupby(["model", "dataset"])["accuracy"].mean()
    anchor = [baseline.get((m, d), np.nan) for m, d in zip(table["model"], table["dataset"], strict=True)]
    return table["accuracy"] - pd.array(anchor, dtype="Float64")


def _format(group: pd.DataFrame) -> pd.DataFrame:
    def pct(v, digits=2):
        return "" if pd.isna(v) else f"{100 * v:.{digits}f}"

    def num(v, fmt):
        return "" if pd.isna(v) else format(v, fmt)

    rows = []
    for row in group.itertuples(index=False):
        failed = f" ({row.failed_runs} failed)" if row.failed_runs else ""
        status = "failed" if row.seeds == 0 else ("yes" if row.reload_identical else "NO")
        rows.append(
            {
                "rank": "" if pd.isna(row.rank) else int(row.rank),
                "method": _escape(row.method) + ("" if row.role == "method" else f" ({row.role})"),
                "seeds": f"{row.seeds}{failed}",
                "accuracy %": pct(row.accuracy)
                + ("" if pd.isna(row.accuracy_std) else f" ± {pct(row.accuracy_std)}"),
                "macro-F1 %": pct(row.macro_f1),
                "loss": num(row.loss, ".4f"),
                "Δ vs baseline": ""
                if pd.isna(row.delta_vs_baseline)
                else f"{100 * row.delta_vs_baseline:+.2f}",
                "trainable params": num(row.trainable_params, ","),
                "trainable %": num(row.trainable_percent, ".3f"),
                "train s": num(row.train_seconds, ".1f"),
                "samples/s": num(row.samples_per_second, ".1f"),
                "tokens/s": num(row.tokens_per_second, ",.0f"),
                "peak MB": num(row.peak_memory_mb, ",.0f"),
                "adapter KB": num(
                    row.adapter_bytes / 1024 if not pd.isna(row.adapter_bytes) else np.nan, ",.1f"
                ),
                "reload identical": status,
            }
        )
    return pd.DataFrame(rows)


def _escape(text: object) -> str:
    """Names come from plugins and datasets: keep them from turning into Markdown/HTML markup."""
    value = str(text)
    for char, replacement in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        value = value.replace(char, replacement)
    return value
