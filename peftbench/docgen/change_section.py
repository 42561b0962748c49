"""A table page's "What changed" section: its methods against the same table of an earlier results
folder (``peftbench docs --previous``), from ``peftbench.leaderboard.changes``."""

from __future__ import annotations

import pandas as pd

from peftbench.docgen.markup import cell, html_table
from peftbench.formatting import escape
from peftbench.tasks.metrics import Metric

#: The section of a table that the previous results folder does not have.
FIRST_PUBLISHED = (
    "<p>First published under this protocol: the previous results folder has no table for this "
    "model, dataset and metric, so there is nothing to compare with.</p>"
)


def change_section(rows: pd.DataFrame | None, metric: Metric) -> str:
    """The section's note and table for one table's rows of ``changes()``: a one-line note where
    the previous folder lacks the table (no rows), empty where no previous folder was given (None)."""
    if rows is None:
        return ""
    if rows.empty:
        return FIRST_PUBLISHED
    before = " / ".join(sorted({str(v) for v in rows["version_before"].dropna()})) or "unknown"
    now = " / ".join(sorted({str(v) for v in rows["version_now"].dropna()})) or "unknown"
    headers = [
        "method", f"{metric.header} before ({before})", f"{metric.header} now ({now})", "change",
        "chosen before", "chosen now", "flags now",
    ]  # fmt: skip
    table = []
    for row in rows.itertuples():
        table.append(
            [
                cell(row.method),
                cell(_score(row.score_before, row.ci95_before, metric), _sort(row.score_before)),
                cell(_score(row.score_now, row.ci95_now, metric), _sort(row.score_now)),
                cell(metric.number(row.change, signed=True), _sort(row.change)),
                cell(_text(row.tuned_before, row.score_before)),
                cell(_text(row.tuned_now, row.score_now)),
                cell(_text(row.flags_now, row.score_now, "none")),
            ]
        )
    note = (
        f"<p>This table against the same model, dataset and metric as published by peftbench "
        f"{escape(before, 'html')}: each method's row best on validation in each (the mean test "
        f"{escape(metric.title, 'html')} over its seeds ± its 95% interval), the values its search "
        "chose, and today's flags. <em>not run</em>: the method has no completed row there. Rows of "
        "the two are never averaged together.</p>"
    )
    return f"{note}\n\n{html_table(headers, table, sortable=True, label='what changed')}"


def _score(score: object, ci95: object, metric: Metric) -> str:
    if pd.isna(score):
        return "not run"
    interval = metric.number(ci95)
    return metric.number(score) + (f" ± {interval}" if interval else "")


def _text(value: object, score: object, empty: str = "defaults") -> str:
    if pd.isna(score):
        return ""
    return empty if pd.isna(value) or not str(value) else str(value)


def _sort(value: object) -> float | None:
    return None if pd.isna(value) else float(value)
