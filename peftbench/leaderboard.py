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
from peftbench.tuning import edge_keys

RUN_COLUMNS = {
    "model": "string",
    "dataset": "string",
    "method": "string",
    "config": "string",
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
    "samples_per_second": "Float64",
    "tokens_per_second": "Float64",
    "eval_seconds": "Float64",
    "peak_memory_mb": "Float64",
    "adapter_bytes": "Int64",
    "mfu": "Float64",
    "reload_identical": "boolean",
    "tuned": "string",
    "error": "string",
}
COST_COLUMNS = [
    "trainable_params", "total_params", "trainable_percent", "train_seconds", "samples_per_second",
    "tokens_per_second", "eval_seconds", "peak_memory_mb", "adapter_bytes", "mfu",
]  # fmt: skip
FRAME_COLUMNS = [
    "rank", "model", "dataset", "method", "role", "source", "seeds", "failed_runs", "accuracy",
    "accuracy_std", "accuracy_ci95", "accuracy_per_seed", "macro_f1", "loss", "delta_vs_baseline",
    "p_vs_baseline", "delta_vs_best", "p_vs_best", "tied_for_best", "validation_accuracy", "tuned",
    *COST_COLUMNS, "reload_identical", "dataset_fingerprint",
]  # fmt: skip
GROUP = ["model", "dataset"]
KEYS = ["model", "dataset", "method", "config"]


class Leaderboard:
    """The leaderboard of a set of run records."""

    def __init__(self, records: Iterable[RunRecord], sweep_run_ids: Iterable[str] | None = None) -> None:
        self.records = list(records)
        # The final runs of the sweep that produced this board (None: a folder read as it is).
        self.sweep_run_ids = None if sweep_run_ids is None else list(sweep_run_ids)
        self._final = _latest_per_seed(r for r in self.records if r.stage == "final")
        self._final_by_key: dict[tuple, list[RunRecord]] = {}
        for record in self._final:
            key = (record.model, record.dataset, record.method, config_key(record))
            self._final_by_key.setdefault(key, []).append(record)

    @classmethod
    def from_dir(cls, out: str | Path, sweep_run_ids: Iterable[str] | None = None) -> Leaderboard:
        return cls(read_records(Path(out)), sweep_run_ids)

    def incomplete_runs(self) -> list[RunRecord]:
        """Final runs that failed or diverged: of the sweep that made this board, else of all."""
        finals = [r for r in self.records if r.stage == "final"]
        if self.sweep_run_ids is not None:
            wanted = set(self.sweep_run_ids)
            finals = [r for r in finals if r.run_id in wanted]
        return [r for r in finals if r.status != "complete"]

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
            dataset_fingerprint=group["dataset_fingerprint"].iloc[0],
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
        rows = [
            np.asarray(r.predictions) == np.asarray(r.references)
            for r in self._final_by_key.get(key, [])
            if r.status == "complete" and r.predictions and len(r.predictions) == len(r.references)
        ]
        if not rows or len({len(row) for row in rows}) != 1:
            return None
        return np.mean(rows, axis=0)

    @staticmethod
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
            fingerprint = group["dataset_fingerprint"] == row["dataset_fingerprint"]
            same_data = group[(group["seeds"] > 0) & fingerprint]
            baselines = same_data[same_data["role"] == "baseline"].sort_values("seeds", ascending=False)
            anchor = baselines.iloc[0] if len(baselines) else None
            best = same_data.loc[same_data["accuracy"].idxmax()]
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
    "accuracy: mean over seeds ± 95% Student-t interval (SD: standard deviation over seeds); "
    "p: paired bootstrap over test examples (10,000 resamples) of the per-example accuracy "
    "averaged over seeds — it measures the test set's sampling noise, the interval the seeds'; "
    f"★ not significantly worse than the best (p ≥ {SIGNIFICANCE}); "
    "(grid edge): the tuned value is the end of its search range."
)


def _p_value(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None or len(a) != len(b):
        return np.nan
    return paired_bootstrap(a, b).p_value


def config_key(record: RunRecord) -> str:
    """What tells two configurations of one method apart: hyper-parameters, training settings,
    the data (its fingerprint) and the code (method source, peftbench version) — runs that differ
    in any of these are never averaged together."""
    return run_key(
        {
            "hp": record.hyperparameters,
            "train": record.train_config,
            "data": record.dataset_fingerprint,
            "source": record.method_source,
            "peftbench": record.peftbench_version,
        }
    )


def _latest_per_seed(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per configuration and seed (the last finished), so no seed counts twice."""
    latest: dict[tuple, RunRecord] = {}
    for record in records:
        key = (record.model, record.dataset, record.method, config_key(record), record.seed)
        if key not in latest or record.finished_at >= latest[key].finished_at:
            latest[key] = record
    return list(latest.values())


def tuned_text(chosen: dict, edges: list[str]) -> str:
    """``learning_rate=0.003 (grid edge)``: a choice at the end of its range is flagged."""
    parts = []
    for key, value in chosen.items():
        text = f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
        parts.append(text + (" (grid edge)" if key in edges else ""))
    return ", ".join(parts)


def _run_row(record: RunRecord) -> dict:
    m, c = record.metrics, record.costs
    chosen = (record.tuning or {}).get("chosen") or {}
    return {
        "model": record.model,
        "dataset": record.dataset,
        "method": record.method,
        "config": config_key(record),
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
        "samples_per_second": c.get("train_samples_per_second"),
        "tokens_per_second": c.get("train_tokens_per_second"),
        "eval_seconds": c.get("eval_seconds"),
        "peak_memory_mb": c.get("peak_memory_mb"),
        "adapter_bytes": c.get("adapter_bytes"),
        "mfu": c.get("model_flops_utilisation"),
        "reload_identical": record.reload.get("predictions_identical"),
        "tuned": tuned_text(chosen, edge_keys(record.tuning)),
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
                "SD": num(100 * row.accuracy_std, ".2f") if row.seeds > 1 else "",
                "best": "★" if row.tied_for_best else "",
                "macro-F1 %": num(100 * row.macro_f1, ".2f"),
                "Δ vs baseline": delta + p_value if delta else "",
                "trainable params": num(row.trainable_params, ",.0f"),
                "trainable %": num(row.trainable_percent, ".3f"),
                "tuned": escape(row.tuned) if isinstance(row.tuned, str) else "",
                "train s": num(row.train_seconds, ".1f"),
                "samples/s": num(row.samples_per_second, ".1f"),
                "tokens/s": num(row.tokens_per_second, ",.0f"),
                "eval s": num(row.eval_seconds, ".1f"),
                "peak MB": num(row.peak_memory_mb, ",.0f"),
                "MFU %": num(100 * row.mfu if not pd.isna(row.mfu) else np.nan, ".1f"),
                "adapter KB": num(
                    row.adapter_bytes / 1024 if not pd.isna(row.adapter_bytes) else np.nan, ",.1f"
                ),
                "reload identical": "" if not row.seeds else ("yes" if row.reload_identical else "NO"),
            }
        )
    shown = pd.DataFrame(rows)
    if len(shown) and shown["MFU %"].eq("").all():  # measured on GPUs only
        shown = shown.drop(columns="MFU %")
    return shown


def p_text(p: float) -> str:
    """A bootstrap p-value as people should read it: 0 resamples against means below 1/1000, not 0."""
    return "p<0.001" if p < 0.0005 else f"p={p:.3f}"


def escape(text: object) -> str:
    """Names come from plugins and datasets: keep them from turning into Markdown/HTML markup."""
    value = "" if text is None or (not isinstance(text, str) and pd.isna(text)) else str(text)
    for char, replacement in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        value = value.replace(char, replacement)
    return value
