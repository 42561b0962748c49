"""A verdict over several datasets: the leaderboard's tables of one model, one row per method.

Only models with results on two or more datasets are aggregated, each trained on its whole training
split: a table trained on a fixed subset (``--train-examples``, ``NAME[train=N]``) is a setting of
its own, shown on its page and left out here. The rules, which the terminal
and site views repeat in ``AGGREGATE_LEGEND``:

- **Each dataset's metric.** A dataset is scored by its table's primary metric (accuracy for a
  classification, Spearman for a regression, or what ``--metric`` chose) in that metric's
  direction: datasets of different kinds of task are ranked alike, each by its own metric. Only
  rows on a table's current data and metric (those of its newest record) count.
- **Which row stands for a method on a dataset.** Among its configurations there (variants) that
  completed at least one seed, the one with the best mean *validation* score, ties to more
  seeds: a tuned sweep's choice is its best candidate on validation, and the test score never
  picks.
- **Mean rank.** On each dataset the methods present there are ranked by mean test score
  (1 is best; ties share the average rank); a method's ranks are averaged over the datasets it
  has. A method missing on a dataset is not ranked there and nothing is imputed: its mean rank
  is over fewer datasets, which ``datasets`` says. So is a row whose test score is undefined (a
  rank correlation of constant predictions, as the train-mean reference gives).
- **Its interval.** With two or three datasets an interval over datasets says next to nothing,
  so it comes from the noise within each dataset: the 2.5-97.5 percentiles of the mean rank over
  ``RANK_RESAMPLES`` bootstrap resamples, each drawing every dataset's test examples (the same for
  every method: paired) and each method's seeds with replacement, then ranking again. It says how
  far seed and test-set noise could move the ranking on *these* datasets, not how a method would
  rank on others. Where a dataset's rows lack per-example predictions, only seeds are drawn there.
- **Wins, ties, losses.** Against each other method on each dataset both ran on, by the
  leaderboard's two-level paired bootstrap: a win is significantly better (p < ``SIGNIFICANCE``),
  a loss significantly worse, a tie neither. Pairs without predictions on the same test
  examples cannot be tested and are counted as ``untested``.
- **Gain share.** (score - baseline) / (full fine-tuning - baseline) on each dataset: the share
  of what full fine-tuning gains over the untuned baseline that the method recovers. Missing (not
  0) on a dataset without either of them, or where full fine-tuning does not beat the baseline
  significantly by the paired test above: a share of a gain that is noise is noise magnified
  (a one-point gain turns a five-point loss into -500%). The mean is over the datasets where it
  exists, which ``gain_share_datasets`` counts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from peftbench.leaderboard.model import Leaderboard, outcomes
from peftbench.leaderboard.stats import (
    BOOTSTRAP_SEED,
    SIGNIFICANCE,
    Outcomes,
    paired_bootstrap,
    resampled_scores,
)
from peftbench.records import RunRecord

#: Resamples behind the mean rank's interval: each one ranks every dataset again.
RANK_RESAMPLES = 2_000
#: The method whose gain over the untuned baseline is the whole gain (the gain share's 100%).
CEILING = "full_finetune"
AGGREGATE_COLUMNS = {
    "model": "string",
    "method": "string",
    "role": "string",
    "datasets": "Int64",  # datasets the method has a result on
    "datasets_total": "Int64",  # datasets the model has results on
    "mean_rank": "Float64",
    "mean_rank_low": "Float64",
    "mean_rank_high": "Float64",
    "wins": "Int64",
    "ties": "Int64",
    "losses": "Int64",
    "untested": "Int64",
    "gain_share": "Float64",
    "gain_share_datasets": "Int64",
}
#: Per dataset (every dataset of the model, NaN or None where the method is missing).
PER_DATASET_COLUMNS = [
    "score_per_dataset", "metric_per_dataset", "rank_per_dataset", "gain_share_per_dataset",
    "label_per_dataset",
]  # fmt: skip


@dataclass(frozen=True)
class _Entry:
    """The row that stands for one method on one dataset."""

    method: str
    role: str
    label: str
    score: float  # mean test score in the dataset's primary metric
    higher_is_better: bool
    metric: str
    per_seed: np.ndarray  # test score of each completed seed
    outcomes: Outcomes | None  # test predictions of each seed; None without them


def aggregate(board: Leaderboard, ceiling: str = CEILING) -> pd.DataFrame:
    """One row per (model, method) for every model with results on two or more datasets, best
    mean rank first; see the module's docstring for what each column means."""
    frame = board.to_frame()
    frame = frame[frame["train_examples"].isna()]  # subsets of a training split: their own pages
    records = {record.run_id: record for record in board.final}
    rows = []
    for model, table in frame.groupby("model", sort=True):
        entries = {dataset: _representatives(rows, records) for dataset, rows in table.groupby("dataset")}
        entries = {dataset: present for dataset, present in sorted(entries.items()) if present}
        if len(entries) >= 2:
            rows += _model_rows(str(model), entries, ceiling)
    result = pd.DataFrame(rows, columns=[*AGGREGATE_COLUMNS, *PER_DATASET_COLUMNS])
    return result.astype(AGGREGATE_COLUMNS).reset_index(drop=True)


def best_on_validation(done: pd.DataFrame) -> pd.DataFrame:
    """One row per method of one table's completed rows: among its configurations, the best mean
    validation score in the metric's direction, ties to more seeds, then the configuration key."""
    higher = bool(done["higher_is_better"].iloc[0]) if len(done) else True
    validation = done["validation_score"].astype(float) * (1 if higher else -1)
    ordered = done.assign(_validation=validation).sort_values(
        ["_validation", "seeds", "config"], ascending=[False, False, True], na_position="last"
    )
    return ordered.drop_duplicates("method").drop(columns="_validation")


def _representatives(table: pd.DataFrame, records: dict[str, RunRecord]) -> dict[str, _Entry]:
    """method -> the row that stands for it on this dataset (see the module's docstring)."""
    done = table[(table["seeds"] > 0) & table["score"].notna()]
    if done.empty:
        return {}
    newest = done["run_ids"].map(lambda ids: max(records[i].finished_at for i in ids))
    current, metric = done.loc[newest.idxmax(), ["dataset_fingerprint", "metric"]]
    done = done[done["dataset_fingerprint"].fillna("") == ("" if pd.isna(current) else current)]
    done = done[done["metric"] == metric]
    higher = bool(done["higher_is_better"].iloc[0])
    entries = {}
    for _, row in best_on_validation(done).iterrows():
        entries[str(row["method"])] = _Entry(
            method=str(row["method"]),
            role=str(row["role"]),
            label=str(row["label"]),
            score=float(row["score"]),
            higher_is_better=higher,
            metric=str(metric),
            per_seed=np.asarray(list(row["score_per_seed"].values()), dtype=float),
            outcomes=outcomes([records[i] for i in row["run_ids"]]),
        )
    return entries


def _model_rows(model: str, entries: dict[str, dict[str, _Entry]], ceiling: str) -> list[dict]:
    datasets = list(entries)
    methods = sorted({method for present in entries.values() for method in present})
    ranks = {dataset: _ranks(present) for dataset, present in entries.items()}
    gains = {dataset: _gain_shares(present, ceiling) for dataset, present in entries.items()}
    resampled = _resampled_rank_sums(entries, methods)
    outcomes = _outcomes(entries, methods)
    rows = []
    for method in methods:
        have = [dataset for dataset in datasets if method in entries[dataset]]
        low, high = np.percentile(resampled[method] / len(have), [2.5, 97.5])
        gain = {dataset: gains[dataset].get(method, math.nan) for dataset in datasets}
        defined = [share for share in gain.values() if not math.isnan(share)]
        rows.append(
            {
                "model": model,
                "method": method,
                "role": entries[have[0]][method].role,
                "datasets": len(have),
                "datasets_total": len(datasets),
                "mean_rank": float(np.mean([ranks[dataset][method] for dataset in have])),
                "mean_rank_low": float(low),
                "mean_rank_high": float(high),
                **outcomes[method],
                "gain_share": float(np.mean(defined)) if defined else math.nan,
                "gain_share_datasets": len(defined),
                "score_per_dataset": {
                    d: entries[d][method].score if method in entries[d] else math.nan for d in datasets
                },
                "metric_per_dataset": {d: next(iter(entries[d].values())).metric for d in datasets},
                "rank_per_dataset": {d: ranks[d].get(method, math.nan) for d in datasets},
                "gain_share_per_dataset": gain,
                "label_per_dataset": {
                    d: entries[d][method].label if method in entries[d] else None for d in datasets
                },
            }
        )
    return sorted(rows, key=lambda row: (row["mean_rank"], row["method"]))


def _ranks(present: dict[str, _Entry]) -> dict[str, float]:
    """method -> rank by mean test score among the methods present (1 best, ties averaged)."""
    ranked = scipy_stats.rankdata([_better_first(e.score, e) for e in present.values()], method="average")
    return {method: float(rank) for method, rank in zip(present, ranked, strict=True)}


def _resampled_rank_sums(entries: dict[str, dict[str, _Entry]], methods: list[str]) -> dict[str, np.ndarray]:
    """method -> per resample, the sum of its ranks over the datasets it has (seeded, so the same
    board always gives the same interval)."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    sums = {method: np.zeros(RANK_RESAMPLES) for method in methods}
    for present in entries.values():
        rows = [entry.outcomes for entry in present.values()]
        paired = all(row is not None for row in rows) and len({row.examples for row in rows}) == 1
        if not paired:
            rows = [entry.per_seed for entry in present.values()]
        scores = resampled_scores(rows, RANK_RESAMPLES, rng, paired)
        first = next(iter(present.values()))
        ranks = scipy_stats.rankdata(_better_first(scores, first), axis=0, method="average")
        for method, row in zip(present, ranks, strict=True):
            sums[method] += row
    return sums


def _outcomes(entries: dict[str, dict[str, _Entry]], methods: list[str]) -> dict[str, dict[str, int]]:
    """method -> wins, ties, losses and untested pairs against the other methods, over datasets."""
    counts = {method: dict.fromkeys(("wins", "ties", "losses", "untested"), 0) for method in methods}
    opposite = {"wins": "losses", "losses": "wins", "ties": "ties", "untested": "untested"}
    for present in entries.values():
        for a, b in itertools.combinations(sorted(present), 2):  # each pair tested once, a fixed way
            outcome = _paired_outcome(present[a], present[b])
            counts[a][outcome] += 1
            counts[b][opposite[outcome]] += 1
    return counts


def _better_first(scores, entry: _Entry):
    """Scores turned so that smaller is better (for ranking), whichever way the metric points."""
    return -np.asarray(scores) if entry.higher_is_better else np.asarray(scores)


def _paired_outcome(a: _Entry, b: _Entry) -> str:
    """How ``a`` did against ``b`` on one dataset, by the leaderboard's paired bootstrap."""
    if a.outcomes is None or b.outcomes is None or a.outcomes.examples != b.outcomes.examples:
        return "untested"
    compared = paired_bootstrap(a.outcomes, b.outcomes)
    if math.isnan(compared.p_value):
        return "untested"
    if compared.p_value >= SIGNIFICANCE or compared.difference == 0:
        return "ties"
    better = compared.difference > 0 if a.higher_is_better else compared.difference < 0
    return "wins" if better else "losses"


def _gain_shares(present: dict[str, _Entry], ceiling: str) -> dict[str, float]:
    """method -> share of the ceiling's gain over the baseline; empty without either of them or
    where the ceiling's gain is not significant (a tie or a loss by the paired test)."""
    baselines = sorted(
        (entry for entry in present.values() if entry.role == "baseline"), key=lambda e: -len(e.per_seed)
    )
    top = present.get(ceiling)
    if not baselines or top is None:
        return {}
    base = baselines[0]
    if top.score == base.score or _paired_outcome(top, base) in ("ties", "losses"):
        return {}
    gain = top.score - base.score
    return {method: (entry.score - base.score) / gain for method, entry in present.items()}
