"""Records -> the leaderboard's data: one pandas frame per view to read, a pure function of records.

One row per (model, dataset, metric, method, configuration), over the seeds that completed: the
mean test score in the table's primary metric (``score``; each metric the records have in its own
column too) with a Student-t 95% interval, and two-level paired bootstrap p-values against the
untuned baseline and against the best row on the same test examples, best meaning highest or
lowest as the metric says. Failed runs are counted and shown, never averaged in. Tuning
candidates (scored on validation only) are not leaderboard rows. Records written before tasks
existed are single-text classification scored by accuracy.

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
from peftbench.leaderboard.columns import COLUMNS, COSTS, COUNTS
from peftbench.leaderboard.configurations import RUN_IDENTITY, config_key, edge_notes, variant_labels
from peftbench.leaderboard.curves import curves_frame
from peftbench.leaderboard.stats import SIGNIFICANCE, Outcomes, mean_and_ci, paired_bootstrap
from peftbench.records import LAST_STANDARD_ERROR, RunRecord, read_records
from peftbench.tasks.metrics import BUILTIN_METRICS, display_metric

BASE_RUN_COLUMNS = {
    **RUN_IDENTITY,
    "dataset_fingerprint": "string",
    "train_examples": "Int64",  # the fixed training subset's size (--train-examples); NA: the whole split
    "role": "string",
    "source": "string",
    "seed": "Int64",
    "status": "string",
    "task": "string",  # the kind of task (peftbench.tasks)
    "metric": "string",  # its primary metric: what ``score`` is
    "higher_is_better": "boolean",
    "score": "Float64",  # the primary metric on test
    "validation_score": "Float64",  # the primary metric on validation
    "loss": "Float64",
    "other_load": "Float64",  # cores' worth of CPU other processes used during the run
    "machine": "string",  # the tag of the machine it ran on (``environment.machine_tag``)
    **{column.name: column.dtype for column in COLUMNS if column.source},
    "tuned": "string",
    "budget": "string",
    "error": "string",
}
#: Dicts, kept as they are in the records; ``method_metrics`` (what a method reports about itself,
#: ``Method.report``) is averaged over the completed seeds in ``to_frame``.
OBJECT_COLUMNS = ["tuned_values", "hyperparameters", "method_metrics"]
COST_COLUMNS = [column.name for column in COSTS]
GROUP = ["model", "dataset", "metric"]  # one table: rows compared, ranked and scored alike
KEYS = ["model", "dataset", "metric", "method", "config"]


def frame_columns(metrics: list[str]) -> list[str]:
    """The columns of ``Leaderboard.to_frame()``, with a mean column per metric the records have."""
    return [
        "rank", "model", "dataset", "method", "label", "role", "source", "seeds", "failed_runs", "task",
        "metric", "higher_is_better", "score", "score_std", "score_ci95", "score_per_seed", *metrics,
        "loss", "delta_vs_baseline", "p_vs_baseline", "delta_vs_best", "p_vs_best", "tied_for_best",
        *diagnostics.COLUMNS, "machine", "validation_score", "tuned", "tuned_values", "hyperparameters",
        *COST_COLUMNS, "budget", "reload_identical", "run_ids", "config", "dataset_fingerprint",
        "train_examples", "method_metrics",
    ]  # fmt: skip


def metric_names(records: Iterable[RunRecord]) -> list[str]:
    """Every metric some record has on test, the built-in ones in their declared order first."""
    named = {record.metric for record in records} | {
        name for record in records for name in record.metrics if name in BUILTIN_METRICS
    }
    return [name for name in BUILTIN_METRICS if name in named] + sorted(named - set(BUILTIN_METRICS))


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
        metrics = metric_names(self.final)
        dtypes = {**BASE_RUN_COLUMNS, **dict.fromkeys(metrics, "Float64")}
        rows = [_run_row(record, self.label(record), metrics) for record in self.final]
        return pd.DataFrame(rows, columns=[*dtypes, *OBJECT_COLUMNS]).astype(dtypes)

    def curves_frame(self) -> pd.DataFrame:
        """Learning curves of the completed final runs: a row per (run, series, step, value)."""
        return curves_frame(self.final, self.label, config_key)

    def to_frame(self) -> pd.DataFrame:
        """One row per method configuration and (model, dataset, metric), best score first."""
        return self._frame.copy()

    def aggregate(self) -> pd.DataFrame:
        """Per model with results on 2+ datasets, one row per method: mean rank (with a seed- and
        test-example-bootstrap interval), wins/ties/losses, share of full fine-tuning's gain."""
        from peftbench.leaderboard.aggregate import aggregate

        return aggregate(self)

    def to_markdown(self, columns: str | list[str] = "all", width: int | None = None) -> str:
        """A Markdown table per (model, dataset), formatted for people (and terminals): every
        column (``"all"``), the deciding ones (``"default"``) or those named, fitted to ``width``
        characters where given."""
        from peftbench.leaderboard.report import markdown

        return markdown(self.to_frame(), columns, width)

    def to_csv(self, path: str | Path | None = None) -> str | None:
        """Every column of ``to_frame``; dicts and lists (per-seed values, run ids) as JSON."""
        from peftbench.leaderboard.report import csv

        return csv(self.to_frame(), path)

    @functools.cached_property
    def _frame(self) -> pd.DataFrame:
        runs = self.runs_frame()
        metrics = metric_names(self.final)
        if runs.empty:
            return pd.DataFrame(columns=frame_columns(metrics))
        by_key: dict[tuple, list[RunRecord]] = {}
        for record in self.final:
            key = (record.model, record.dataset, record.metric, record.method, config_key(record))
            by_key.setdefault(key, []).append(record)
        rows = [_row(key, group, by_key[key], metrics) for key, group in runs.groupby(KEYS, sort=False)]
        table = pd.DataFrame(rows)
        parts = [_compare(group) for _, group in table.groupby(GROUP, sort=False)]
        table = pd.concat(parts)
        # Best first in each table, whichever way its metric points; NaN (failed rows) last.
        table["_order"] = table["score"].where(~table["higher_is_better"].astype(bool), -table["score"])
        table = table.sort_values([*GROUP, "_order"], na_position="last")
        table["rank"] = table.groupby(GROUP)["_order"].rank(method="min").astype("Int64")
        table[COUNTS] = table[COUNTS].round().astype("Int64")
        table = table.astype({k: v for k, v in diagnostics.COLUMNS.items() if v != "object"})
        return table[frame_columns(metrics)].reset_index(drop=True)


def _row(key: tuple, group: pd.DataFrame, records: list[RunRecord], metrics: list[str]) -> dict[str, Any]:
    done = group[group["status"] == "complete"]
    mean, std, half = mean_and_ci(done["score"].astype(float).tolist())
    row = dict(zip(KEYS, key, strict=True))
    row.update(
        label=group["label"].iloc[0],
        dataset_fingerprint=group["dataset_fingerprint"].iloc[0],
        train_examples=group["train_examples"].iloc[0],
        role=group["role"].iloc[0],
        source=group["source"].iloc[0],
        seeds=len(done),
        failed_runs=int((group["status"] != "complete").sum()),
        task=group["task"].iloc[0],
        higher_is_better=bool(group["higher_is_better"].iloc[0]),
        score=mean,
        score_std=std,
        score_ci95=half,
        score_per_seed=dict(
            zip(done["seed"].astype(int).tolist(), done["score"].astype(float).tolist(), strict=True)
        ),
        loss=done["loss"].astype(float).mean(),
        validation_score=done["validation_score"].astype(float).mean(),
        tuned=group["tuned"].iloc[0],
        budget=group["budget"].iloc[0],
        tuned_values=group["tuned_values"].iloc[0],
        hyperparameters=group["hyperparameters"].iloc[0],
        run_ids=sorted(group["run_id"]),
        reload_identical=bool(done["reload_identical"].fillna(False).all()) if len(done) else pd.NA,
        method_metrics=_mean_of_dicts(done["method_metrics"]),
    )
    for column in [*metrics, *COST_COLUMNS]:
        row[column] = done[column].astype(float).mean() if len(done) else np.nan
    row["_outcomes"] = outcomes(records)
    row.update(_diagnose(records, row))
    row.update(diagnostics.load_columns(done["other_load"].tolist()))
    row["machine"] = ", ".join(sorted(done["machine"].dropna().unique())) or pd.NA
    return row


def _diagnose(records: list[RunRecord], row: dict[str, Any]) -> dict[str, Any]:
    """The row's flags (``diagnostics``), from its completed runs' curves and test results."""
    series = f"validation_{row['metric']}"
    done = [record for record in records if record.status == "complete"]
    curves = {
        r.seed: (r.curves.get(series), r.metrics.get(series), r.metrics.get(LAST_STANDARD_ERROR))
        for r in done
    }
    per_seed = list(row["score_per_seed"].values())
    return diagnostics.diagnose(curves, per_seed, row["_outcomes"], row["metric"], row["higher_is_better"])


def _mean_of_dicts(values: pd.Series) -> dict[str, float]:
    """Per key, the mean over the runs that reported a number for it."""
    means = {}
    for key in sorted({key for numbers in values for key in numbers}):
        reported = [n[key] for n in values if n.get(key) is not None]
        means[key] = float(np.mean(reported)) if reported else float("nan")
    return means


def outcomes(records: list[RunRecord]) -> Outcomes | None:
    """The test predictions of a row's completed seeds with their references and metric, for the
    paired bootstrap (None where they are unknown, differ in length, or the metric is not one an
    installed task declares)."""
    done = [
        r for r in records
        if r.status == "complete" and r.predictions and len(r.predictions) == len(r.references)
    ]  # fmt: skip
    if not done or len({len(r.predictions) for r in done}) != 1:
        return None
    metric = display_metric(done[0].metric, done[0].higher_is_better)
    if not metric.known:
        return None
    return Outcomes(np.asarray([r.predictions for r in done]), np.asarray(done[0].references), metric)


def _compare(group: pd.DataFrame) -> pd.DataFrame:
    """Δ and paired-bootstrap p-values against the baseline and the best row of one table.

    Rows are only compared with rows on the same data (same dataset fingerprint): a dataset
    that changed under the same name is a different test set. The best row has the highest score,
    or the lowest where the metric says lower is better.
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
        scores = same_data["score"].astype(float)
        best = same_data.loc[scores.idxmax() if row["higher_is_better"] else scores.idxmin()]
        if len(baselines):
            anchor = baselines.iloc[0]
            group.at[index, "delta_vs_baseline"] = row["score"] - anchor["score"]
            same = index == anchor.name  # the baseline itself: no difference, p = 1
            group.at[index, "p_vs_baseline"] = (
                1.0 if same else _p_value(row["_outcomes"], anchor["_outcomes"])
            )
        group.at[index, "delta_vs_best"] = row["score"] - best["score"]
        p_best = 1.0 if index == best.name else _p_value(row["_outcomes"], best["_outcomes"])
        group.at[index, "p_vs_best"] = p_best
        group.at[index, "tied_for_best"] = bool(p_best >= SIGNIFICANCE) if not np.isnan(p_best) else False
    return group.drop(columns="_outcomes")


def _p_value(a: Outcomes | None, b: Outcomes | None) -> float:
    if a is None or b is None or a.examples != b.examples:
        return np.nan
    return paired_bootstrap(a, b).p_value


def _latest_per_seed(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per configuration and seed (the last finished), so no seed counts twice."""
    latest: dict[tuple, RunRecord] = {}
    for record in records:
        key = (record.model, record.dataset, record.metric, record.method, config_key(record), record.seed)
        if key not in latest or record.finished_at >= latest[key].finished_at:
            latest[key] = record
    return list(latest.values())


def _value(record: RunRecord, source: str) -> Any:
    """A run's value at ``source`` ("costs.train_seconds") in its record."""
    section, key = source.split(".", 1)
    return getattr(record, section).get(key)


def _run_row(record: RunRecord, label: str, metrics: list[str]) -> dict[str, Any]:
    chosen = (record.tuning or {}).get("chosen") or {}
    return {
        "model": record.model,
        "dataset": record.dataset,
        "method": record.method,
        "label": label,
        "config": config_key(record),
        "run_id": record.run_id,
        "dataset_fingerprint": record.dataset_fingerprint,
        "train_examples": (record.train_subset or {}).get("examples"),
        "role": record.role,
        "source": record.method_source,
        "seed": record.seed,
        "status": record.status,
        "task": record.task,
        "metric": record.metric,
        "higher_is_better": record.higher_is_better,
        "score": record.primary_score(),
        "validation_score": record.primary_score("validation"),
        "loss": record.metrics.get("loss"),
        "other_load": record.costs.get("other_cpu_share"),
        "machine": record.environment.get("machine"),
        **{name: record.metrics.get(name) for name in metrics},
        **{column.name: _value(record, column.source) for column in COLUMNS if column.source},
        "tuned": hp_text(chosen, edge_notes(record.tuning)),
        "tuned_values": dict(chosen),
        "budget": budget_text(record.budget),
        "error": record.error,
        "hyperparameters": dict(record.hyperparameters),
        "method_metrics": dict(record.method_metrics),
    }


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's mean column of each metric (``accuracy``, ``macro_f1``, ...), in order."""
    columns = list(frame.columns)
    return columns[columns.index("score_per_seed") + 1 : columns.index("loss")]
