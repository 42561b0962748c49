"""Hyper-parameter selection on validation only.

Tuning runs train with the sweep's first seed and are evaluated on the validation split alone:
the test split is not even evaluated, so its labels cannot influence the choice.
"""

from __future__ import annotations

import itertools
from typing import Any

from peftbench.methods.base import Method
from peftbench.records import RunRecord


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
    """Best validation accuracy (ties: lower validation loss, then the earlier candidate).

    Reads nothing but validation metrics; returns what the final records store as ``tuning``.
    """
    rows = [
        {
            "hyperparameters": {key: record.hyperparameters[key] for key in grid},
            "status": record.status,
            "validation_accuracy": record.metrics.get("validation_accuracy"),
            "validation_loss": record.metrics.get("validation_loss"),
            "run_id": record.run_id,
        }
        for record in tried
    ]
    usable = [row for row in rows if row["status"] == "complete" and row["validation_accuracy"] is not None]
    if not usable:
        return {"chosen": {}, "candidates": rows, "note": "no tuning run completed; defaults used"}
    best = max(usable, key=lambda row: (row["validation_accuracy"], -(row["validation_loss"] or 0.0)))
    return {"chosen": dict(best["hyperparameters"]), "candidates": rows}
