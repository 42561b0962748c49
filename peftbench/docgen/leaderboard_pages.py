"""Leaderboard pages: one per (model, dataset) table, and an index of every table.

Each table page states its setup (from the records), shows the rigor columns of the leaderboard
frame in a sortable table, the score-vs-cost plots (the table's primary metric), the learning
curves and, per method, every seed's values.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import pandas as pd

from peftbench.docgen import facts
from peftbench.docgen.change_section import change_section
from peftbench.docgen.curve_plots import BAND, curve_plot_files, curve_plots
from peftbench.docgen.markup import Cell, cell, definition_table, html_table, method_slug, page, slug
from peftbench.docgen.plots import PLOTS, plot_files
from peftbench.docgen.search_sections import SEARCH_COST_NOTE, search_cost_table, tuning_text
from peftbench.formatting import escape, hp_text, number
from peftbench.leaderboard import Leaderboard, diagnostics
from peftbench.leaderboard.columns import INDEX, SITE, header
from peftbench.leaderboard.model import GROUP
from peftbench.leaderboard.report import (
    chosen_columns,
    legend,
    other_metrics,
    table_metric,
    table_texts,
    titles,
)
from peftbench.leaderboard.search_cost import search_cost
from peftbench.records import RunRecord
from peftbench.tasks.metrics import Metric

REGENERATE = "peftbench docs --records leaderboard/records --site docs"


@dataclass(frozen=True)
class Table:
    """One (model, dataset, metric) leaderboard table and the records behind it."""

    model: str
    dataset: str
    slug: str
    frame: pd.DataFrame  # rows of Leaderboard.to_frame() for this (model, dataset, metric)
    final: list[RunRecord]  # the final records its rows are computed from (latest per seed)
    every: list[RunRecord]  # tuning candidates too
    curves: pd.DataFrame  # rows of Leaderboard.curves_frame() for this (model, dataset)
    title: str  # "model on dataset", naming the metric where the dataset has tables by several

    @property
    def metric(self) -> Metric:
        """The table's primary metric: what ranks its rows and what its plots show."""
        return table_metric(self.frame)

    def runs(self, row: pd.Series) -> list[RunRecord]:
        """The final records behind one row of the frame, by seed."""
        wanted = set(row["run_ids"])
        return sorted((r for r in self.final if r.run_id in wanted), key=lambda r: (r.seed, r.run_id))


def split_tables(board: Leaderboard) -> list[Table]:
    """The board's (model, dataset) tables, each with a unique file-name slug."""
    frame, curves = board.to_frame(), board.curves_frame()
    named = titles(frame)
    tables, used = [], {"index", "aggregate"}  # the front page and the page across datasets
    for (model, dataset, metric), group in frame.groupby(GROUP, sort=True):
        several = named[model, dataset, metric] != f"{model} on {dataset}"
        name = slug(f"{model}-{dataset}" + (f"-{metric}" if several else ""))
        while name in used:
            name = f"{name}-{len(used)}"
        used.add(name)
        final = [r for r in board.final if (r.model, r.dataset, r.metric) == (model, dataset, metric)]
        every = [r for r in board.records if (r.model, r.dataset) == (model, dataset)]
        every = [r for r in every if r.metric == metric]
        ids = {r.run_id for r in final}
        mine = curves[curves["run_id"].isin(ids)].reset_index(drop=True)
        table = Table(
            model,
            dataset,
            name,
            group.reset_index(drop=True),
            final,
            every,
            mine,
            named[model, dataset, metric],
        )
        tables.append(table)
    return tables


def anchor(label: str) -> str:
    return "m-" + slug(label)


def _number(item: object) -> float | None:
    return None if item is None or pd.isna(item) else float(item)


def results_table(table: Table, compact: bool = False, link_prefix: str = "") -> str:
    """The rigor columns as a sortable HTML table (``compact``: the index's shorter version); the
    columns and their texts are the leaderboard's (``peftbench.leaderboard.columns``)."""
    view = INDEX if compact else SITE
    metric = table.metric
    columns = [c for c in chosen_columns(table.frame, view)]
    texts = table_texts(table.frame, view)
    columns = [c for c in columns if header(c, metric) in texts.columns]
    rows = []
    for (_, raw), (_, text) in zip(table.frame.iterrows(), texts.iterrows(), strict=True):
        row = []
        for column in columns:
            if column.name == "method":
                label = escape(raw["label"], "html")
                row.append(Cell(f'<a href="{link_prefix}#{anchor(raw["label"])}">{label}</a>'))
                continue
            sort = column.sorted_by
            row.append(cell(text[header(column, metric)], _number(raw[sort]) if sort else None))
        rows.append(row)
    headers = [header(column, metric) for column in columns]
    return html_table(headers, rows, sortable=True, label=f"leaderboard: {table.title}")


def _plots_block(table: Table, prefix: str = "plots/") -> str:
    files, metric = plot_files(table.slug), table.metric
    images = []
    for spec in PLOTS:
        alt = escape(f"test {metric.title} vs {spec.label} for {table.title}", "markdown")
        images.append(f"![{alt}]({prefix}{files[spec.name]})")
    direction = "" if metric.higher_is_better else " (lower is better)"
    note = (
        f"<p>Each point is a method's mean test {escape(metric.title, 'html')}{direction} over its seeds, "
        "with the 95% confidence interval as error bars (a hollow marker: one seed, no interval). The "
        f"dark step line and rings mark the Pareto frontier: methods no other method beats on both "
        f"{escape(metric.title, 'html')} and cost. Rows that cost nothing on an axis (the untuned "
        "baseline, the majority class or training mean) are "
        "dashed horizontal lines, and so are rows not measured on an axis (the majority class or "
        "training mean has no model to time). On the latency plot a half-filled marker, joined to its "
        "method's point by a dotted line, is the same model with the adapter merged into the base weights. "
        "Failed rows are not plotted.</p>"
    )
    return "\n\n".join([note, *images])


def _curves_block(table: Table, prefix: str = "plots/") -> str:
    files = curve_plot_files(table.slug, table.curves, table.metric)
    if not files:
        return (
            "<p>No learning curves: none of this table's completed runs recorded one (their records "
            "were written before peftbench kept learning curves, or their methods train nothing).</p>"
        )
    note = (
        "<p>Per method, its final runs (the configuration in the table above): the line is the mean "
        f"over seeds, the shaded {escape(BAND, 'html')} (no band: one seed). The training loss is "
        f"the mean over each logging interval; validation {escape(table.metric.title, 'html')} is "
        "measured at a few evenly spaced "
        "steps, the last at the end of training. Seeds are compared on the steps they all have. "
        "Rows without curves (methods that train nothing, older records) are not drawn.</p>"
    )
    alt = {
        plot.name: f"{plot.label} vs optimiser step for {table.title}" for plot in curve_plots(table.metric)
    }
    images = [f"![{escape(alt[name], 'markdown')}]({prefix}{file})" for name, file in files.items()]
    return "\n\n".join([note, *images])


def _load_text(other: float | None) -> str:
    """A run's other load in cores, marked where it exceeds the limit (``diagnostics``)."""
    shown = number(other, ".2f")
    under = shown and other > diagnostics.OTHER_LOAD_LIMIT
    return f"{shown} {diagnostics.UNDER_LOAD}" if under else shown


def _seed_table(records: list[RunRecord], metric: Metric, others: list[Metric]) -> str:
    headers = [
        "seed", "status", f"test {metric.header}", *(m.header for m in others), f"validation {metric.header}",
        "train s", "samples/s", "other load", "machine", "peak MB", "adapter KB", "reload identical",
        "finished", "error",
    ]  # fmt: skip
    rows = []
    for record in records:
        m, c = record.metrics, record.costs
        reload = record.reload.get("predictions_identical")
        values = [
            (record.seed, record.seed),
            (record.status, None),
            (metric.number(record.primary_score()), _number(record.primary_score())),
            *((other.number(m.get(other.name)), _number(m.get(other.name))) for other in others),
            (metric.number(record.primary_score("validation")), _number(record.primary_score("validation"))),
            (number(c.get("train_seconds"), ".1f"), _number(c.get("train_seconds"))),
            (number(c.get("train_samples_per_second"), ".1f"), _number(c.get("train_samples_per_second"))),
            (_load_text(c.get("other_cpu_share")), _number(c.get("other_cpu_share"))),
            (str(record.environment.get("machine") or ""), None),
            (number(c.get("peak_memory_mb"), ",.0f"), _number(c.get("peak_memory_mb"))),
            (number(c.get("adapter_bytes"), ",.1f", 1 / 1024), _number(c.get("adapter_bytes"))),
            ("" if reload is None else ("yes" if reload else "NO"), None),
            (record.finished_at, None),
            (record.error or "", None),
        ]
        rows.append([cell(text, sort) for text, sort in values])
    recorded = {  # not in records before 0.4: their columns are left out
        "other load": any("other_cpu_share" in record.costs for record in records),
        "machine": any(record.environment.get("machine") for record in records),
    }
    for name in [name for name, kept in recorded.items() if not kept]:
        where = headers.index(name)
        headers, rows = headers[:where] + headers[where + 1 :], [r[:where] + r[where + 1 :] for r in rows]
    return html_table(headers, rows, sortable=True, label="per-seed values")


def _method_section(table: Table, row: pd.Series, known_methods: Collection[str]) -> str:
    label, method, metric = str(row["label"]), str(row["method"]), table.metric
    records = table.runs(row)
    interval = "" if pd.isna(row["score_ci95"]) else f" ± {metric.number(row['score_ci95'])}"
    score = "failed" if not row["seeds"] else f"{metric.number(row['score'])}{interval}"
    seeds = row["score_per_seed"].items()
    per_seed = ", ".join(f"seed {seed}: {metric.number(value)}" for seed, value in seeds)
    pairs = [
        ("Role", escape(row["role"], "html")),
        ("Source", escape(row["source"], "html")),
        (f"Test {metric.header}", escape(f"{score} ({per_seed})" if per_seed else score, "html")),
        ("Hyper-parameters", escape(hp_text(row["hyperparameters"]), "html") or "none"),
        ("Tuning", tuning_text(records, metric)),
        ("Diagnostics", escape(diagnostics.details_text(row, metric), "html")),
    ]
    page_link = f"../methods/{method_slug(method)}.md"
    link = f"\n\n[About {escape(method, 'markdown')}]({page_link})" if method in known_methods else ""
    heading = f"### {escape(label, 'markdown')} {{#{anchor(label)}}}"
    seed_table = _seed_table(records, metric, other_metrics(table.frame))
    return f"{heading}\n\n{definition_table(pairs)}{link}\n\n{seed_table}"


def _search_cost_block(table: Table) -> str:
    costs = [search_cost(table.runs(row), table.every) for _, row in table.frame.iterrows()]
    found = [cost for cost in costs if cost is not None]
    return f"{SEARCH_COST_NOTE}\n\n{search_cost_table(found)}" if found else search_cost_table(found)


def table_page(table: Table, known_methods: Collection[str], changed: pd.DataFrame | None = None) -> str:
    """The Markdown page of one (model, dataset, metric) table; with a "What changed" section
    where ``changed`` (``peftbench.leaderboard.changes``, against a previous folder) is given."""
    intro = (
        f"<p>Generated from {len(table.every)} run records by <code>{escape(REGENERATE, 'html')}</code>; "
        "every number below is a pure function of those records.</p>"
    )
    sections = [_method_section(table, row, known_methods) for _, row in table.frame.iterrows()]
    mine = None
    if changed is not None:
        key = (changed["model"] == table.model) & (changed["dataset"] == table.dataset)
        mine = changed[key & (changed["metric"] == table.metric.name)]
    what_changed = change_section(mine, table.metric)
    return page(
        table.title,
        intro,
        "## Setup",
        definition_table(facts.setup_rows(table.final, table.every)),
        "## Results",
        results_table(table),
        f"<p>{escape(legend([table.metric]), 'html')} Click a column header to sort.</p>",
        f"## {table.metric.title[:1].upper()}{table.metric.title[1:]} and cost",
        _plots_block(table),
        "## Learning curves",
        _curves_block(table),
        "## Search cost",
        _search_cost_block(table),
        *(["## What changed", what_changed] if what_changed else []),
        "## Per method",
        *sections,
    )


def index_page(tables: list[Table], across: str | None = None, engines: str | None = None) -> str:
    """The leaderboard's front page: every table in short, linking to its full page (and to the
    page ``across`` datasets and the ``engines`` benchmark pages, where there are)."""
    metrics = list(dict.fromkeys(table.metric.title for table in tables))
    score = f"{metrics[0]} is" if len(metrics) == 1 else "each table's primary metric (its score column) is"
    intro = (
        "<p>One table per (model, dataset). Every method was trained and evaluated by the same "
        f"harness on the same splits; {escape(score, 'html')} the mean over seeds with a 95% Student-t "
        "interval, ★ marks methods not significantly worse than the best (two-level paired "
        "bootstrap over test examples and seeds), and Δ is measured against the untuned baseline "
        "evaluated by the same code. Each full page states the hardware, dates and package "
        "versions and lists every seed's values. Flags mark rows whose number may not hold: "
        f"<em>{diagnostics.STILL_IMPROVING}</em> (training ended while the validation score was still "
        f"clearly rising) and <em>{diagnostics.UNSTABLE}</em> (the seeds disagree by more than the test "
        "set can resolve); each full page's legend states the rules.</p>"
    )
    regenerate = f"Regenerate these pages from the committed records:\n\n```bash\n{REGENERATE}\n```"
    blocks = [intro, regenerate]
    if across:
        blocks.append(
            f"[Across datasets]({across}): per model with results on two or more datasets, each "
            "method's mean rank, wins, ties and losses, and share of full fine-tuning's gain."
        )
    if engines:
        blocks.append(
            f"[Engine benchmarks]({engines}): the training engine against Hugging Face Trainer, "
            "per machine (GPU and CPU), at stated precision."
        )
    for table in tables:
        blocks += [
            f"## {escape(table.title, 'markdown')}",
            f"<p>{facts.summary_line(table.final, table.every)}</p>",
            results_table(table, compact=True, link_prefix=f"{table.slug}/"),
            f"[Full table, plots and per-seed values]({table.slug}.md)",
            f"![{escape(f'test {table.metric.title} vs trainable parameters for {table.title}', 'markdown')}]"
            f"(plots/{plot_files(table.slug)['params']})",
        ]
    return page("Leaderboard", *blocks)
