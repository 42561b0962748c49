"""Hyper-parameter selection on validation only, by the task's primary metric and its direction.

Tuning runs train with the sweep's first seed and are evaluated on the validation split alone:
the test split is not even evaluated, so its labels cannot influence the choice.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from peftbench.methods.base import Method
from peftbench.records import DEFAULT_METRIC, RunRecord


def tuning_grid(method: Method, overrides: dict[str, Any] | None) -> dict[str, list[Any]]:
    """The method's search space minus the keys the user fixed with ``--hp``."""
    fixed = set(overrides or {})
    return {key: values for key, values in method.tuning_grid().items() if key not in fixed}


def candidates(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if not grid:
        return []
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def select_configuration(tried: list[RunRecord], grid: dict[str, list[Any]]) -> dict[str, Any]:
    """The candidate best on validation in the task's primary metric (``best_candidate``).

    Reads nothing but validation metrics; returns what the final records store as ``tuning``:
    ``chosen`` and every candidate with its status and ``validation_<metric>`` and loss.
    """
    metric = tried[0].metric if tried else DEFAULT_METRIC
    higher = tried[0].higher_is_better if tried else True
    score = f"validation_{metric}"
    rows = [
        {
            "hyperparameters": {key: record.hyperparameters[key] for key in grid},
            "status": record.status,
            score: record.primary_score("validation"),
            "validation_loss": record.metrics.get("validation_loss"),
            "run_id": record.run_id,
        }
        for record in tried
    ]
    best = best_candidate(rows, score, higher)
    if best is None:
        return {"chosen": {}, "candidates": rows, "note": "no tuning run completed; defaults used"}
    return {"chosen": dict(best["hyperparameters"]), "candidates": rows}


def best_candidate(rows: list[dict[str, Any]], score: str, higher_is_better: bool) -> dict[str, Any] | None:
    """The completed row best in ``score`` (a validation metric) in its direction; ties go to the
    lower validation loss (a missing loss never wins a tie), then to the earlier row. ``None``
    where no row completed with a score."""
    usable = [
        row for row in rows
        if row["status"] == "complete" and row.get(score) is not None and not math.isnan(row[score])
    ]  # fmt: skip
    if not usable:
        return None

    def key(row: dict[str, Any]) -> tuple[float, float]:
        loss = row.get("validation_loss")
        missing = loss is None or math.isnan(loss)
        return (row[score] if higher_is_better else -row[score], -math.inf if missing else -loss)

    return max(usable, key=key)  # max keeps the first of equal keys: the earlier candidate
