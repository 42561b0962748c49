"""What changed on each table since a previous protocol: the same (model, dataset, metric) table
from an earlier results folder (another peftbench version's records) beside today's, method by
method: the test score before and now, the values each chose, and today's flags.

A method stands in each table for its row that is best on validation (``best_on_validation``,
the aggregate's rule), so a method with several configurations is compared by the one its own
validation score picks, never by test. Rows of one folder are never averaged with the other's.
"""

from __future__ import annotations

import pandas as pd

from peftbench.leaderboard import diagnostics
from peftbench.leaderboard.aggregate import best_on_validation
from peftbench.leaderboard.model import GROUP, Leaderboard
from peftbench.tasks.metrics import display_metric

CHANGE_COLUMNS = {
    "model": "string",
    "dataset": "string",
    "metric": "string",
    "method": "string",
    "version_before": "string",  # the peftbench version(s) that wrote the earlier rows
    "version_now": "string",
    "score_before": "Float64",  # mean test score over seeds; NA where the method was not there
    "ci95_before": "Float64",
    "score_now": "Float64",
    "ci95_now": "Float64",
    "change": "Float64",  # now - before, in the metric's units
    "tuned_before": "string",  # the values the search chose, with its edge notes
    "tuned_now": "string",
    "flags_now": "string",  # today's row's flags (``diagnostics``), as people read them
}


def changes(now: Leaderboard, before: Leaderboard) -> pd.DataFrame:
    """One row per method of each of ``now``'s tables that ``before`` also has, today's rank order
    first, then methods only ``before`` had."""
    current, earlier = now.to_frame(), before.to_frame()
    versions_now, versions_before = _versions(now), _versions(before)
    rows = []
    for (model, dataset, metric), table in current.groupby(GROUP, sort=True):
        old = earlier[earlier[GROUP].eq(pd.Series([model, dataset, metric], index=GROUP)).all(axis=1)]
        if old.empty:
            continue
        new_rows = best_on_validation(table[table["seeds"] > 0]).sort_values("rank", kind="stable")
        new_rows = new_rows.set_index("method", drop=False)
        old_rows = best_on_validation(old[old["seeds"] > 0]).set_index("method", drop=False)
        kind = display_metric(str(metric))
        for method in [*new_rows.index, *(m for m in old_rows.index if m not in new_rows.index)]:
            new = new_rows.loc[method] if method in new_rows.index else None
            past = old_rows.loc[method] if method in old_rows.index else None
            score_now = _get(new, "score")
            score_before = _get(past, "score")
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "metric": metric,
                    "method": method,
                    "version_before": _joined(versions_before, past),
                    "version_now": _joined(versions_now, new),
                    "score_before": score_before,
                    "ci95_before": _get(past, "score_ci95"),
                    "score_now": score_now,
                    "ci95_now": _get(new, "score_ci95"),
                    "change": None if score_now is None or score_before is None else score_now - score_before,
                    "tuned_before": _get(past, "tuned"),
                    "tuned_now": _get(new, "tuned"),
                    "flags_now": None if new is None else diagnostics.flags_text(new, kind),
                }
            )
    return pd.DataFrame(rows, columns=list(CHANGE_COLUMNS)).astype(CHANGE_COLUMNS)


def _versions(board: Leaderboard) -> dict[str, str]:
    """run id -> the peftbench version that wrote it (``unknown`` where its record does not say)."""
    return {record.run_id: record.peftbench_version or "unknown" for record in board.final}


def _joined(versions: dict[str, str], row: pd.Series | None) -> str | None:
    if row is None:
        return None
    return " / ".join(sorted({versions.get(run, "unknown") for run in row["run_ids"]}))


def _get(row: pd.Series | None, name: str):
    value = None if row is None else row[name]
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value
