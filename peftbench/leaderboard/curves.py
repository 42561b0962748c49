"""Learning curves of the leaderboard's final runs: one tidy frame, and its summary over seeds.

``curves_frame`` is what the site's curve plots read (and what to read from Python): one row per
(run, series, step), next to the raw method name and the row's display label, so no view goes
back to the records. Runs that did not complete, and records written before runs kept curves,
contribute no rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from peftbench.leaderboard.configurations import RUN_IDENTITY
from peftbench.records import RunRecord

CURVE_COLUMNS = {
    **RUN_IDENTITY,
    "seed": "Int64",
    "metric": "string",  # train_loss, validation_<metric> (validation_accuracy, ...) or validation_loss
    "step": "Int64",
    "value": "Float64",
}
#: What identifies one curve of one leaderboard row (its seeds are summarised together).
CURVE_KEYS = ["model", "dataset", "method", "label", "metric"]
SUMMARY_COLUMNS = [*CURVE_KEYS, "step", "mean", "low", "high", "seeds"]


def curves_frame(
    records: Iterable[RunRecord], label: Callable[[RunRecord], str], config: Callable[[RunRecord], str]
) -> pd.DataFrame:
    """One row per (completed run, series, step), with explicit dtypes; a missing value is ``<NA>``."""
    rows = [
        {
            "model": record.model,
            "dataset": record.dataset,
            "method": record.method,
            "label": label(record),
            "config": config(record),
            "run_id": record.run_id,
            "seed": record.seed,
            "metric": metric,
            "step": step,
            "value": value,
        }
        for record in records
        if record.status == "complete"
        for metric, points in sorted(record.curves.items())
        for step, value in points
    ]
    frame = pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).astype(CURVE_COLUMNS)
    return frame.sort_values(["model", "dataset", "label", "metric", "seed", "step"], ignore_index=True)


def summarise_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, series and step: the mean over seeds, the lowest and highest seed, and how many.

    Seeds whose steps differ (a run trained with other settings is another row, so this is rare)
    are compared on the steps every one of them has; a step some seed lacks is left out.
    """
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    values = frame.assign(value=frame["value"].astype(float))
    seeds = values.groupby(CURVE_KEYS)["seed"].transform("nunique")
    per_step = values.groupby([*CURVE_KEYS, "step"])["seed"].transform("nunique")
    common = values[per_step == seeds]
    summary = (
        common.groupby([*CURVE_KEYS, "step"], sort=True)
        .agg(mean=("value", "mean"), low=("value", "min"), high=("value", "max"), seeds=("seed", "nunique"))
        .reset_index()
    )
    return summary[SUMMARY_COLUMNS]
