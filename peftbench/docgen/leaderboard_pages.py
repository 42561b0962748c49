"""Leaderboard pages: one per (model, dataset) table, and an index of every table.

Each table page states its setup (from the records), shows the rigor columns of the leaderboard
frame in a sortable table, the accuracy-vs-cost plots, the learning curves and, per method, every
seed's values.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import pandas as pd

from peftbench.docgen import facts
from peftbench.docgen.curve_plots import BAND, CURVE_PLOTS, curve_plot_files
from peftbench.docgen.markup import Cell, cell, definition_table, html_table, method_slug, page, slug
from peftbench.docgen.plots import PLOTS, plot_files
from peftbench.docgen.search_sections import SEARCH_COST_NOTE, search_cost_table, tuning_text
from peftbench.formatting import escape, hp_text, number
from peftbench.leaderboard import Leaderboard, diagnostics
from peftbench.leaderboard.model import GROUP
from peftbench.leaderboard.report import LEGEND, table_texts
from peftbench.leaderboard.search_cost import search_cost
from peftbench.records import RunRecord

REGENERATE = "peftbench docs --records leaderboard/records --site docs"


@dataclass(frozen=True)
class Table:
    """One (model, dataset) leaderboard table and the records behind it."""

    model: str
    dataset: str
    slug: str
    frame: pd.DataFrame  # rows of Leaderboard.to_frame() for this (model, dataset)
    final: list[RunRecord]  # the final records its rows are computed from (latest per seed)
    every: list[RunRecord]  # tuning candidates too
    curves: pd.DataFrame  # rows of Leaderboard.curves_frame() for this (model, dataset)

    @property
    def title(self) -> str:
        return f"{self.model} on {self.dataset}"

    def runs(self, row: pd.Series) -> list[RunRecord]:
        """The final records behind one row of the frame, by seed."""
        wanted = set(row["run_ids"])
        return sorted((r for r in self.final if r.run_id in wanted), key=lambda r: (r.seed, r.run_id))


def split_tables(board: Leaderboard) -> list[Table]:
    """The board's (model, dataset) tables, each with a unique file-name slug."""
    frame, curves = board.to_frame(), board.curves_frame()
    tables, used = [], {"index", "aggregate"}  # the front page and the page across datasets
    for (model, dataset), group in frame.groupby(GROUP, sort=True):
        name = slug(f"{model}-{dataset}")
        while name in used:
            name = f"{name}-{len(used)}"
        used.add(name)
        final = [r for r in board.final if (r.model, r.dataset) == (model, dataset)]
        every = [r for r in board.records if (r.model, r.dataset) == (model, dataset)]
        mine = curves[(curves["model"] == model) & (curves["dataset"] == dataset)].reset_index(drop=True)
        tables.append(Table(model, dataset, name, group.reset_index(drop=True), final, every, mine))
    return tables


def anchor(label: str) -> str:
    return "m-" + slug(label)


def _number(item: object) -> float | None:
    return None if item is None or pd.isna(item) else float(item)


# (header on the site, the report column it shows, the frame column it sorts by)
SITE_COLUMNS = [
    ("rank", "rank", "rank"),
    ("method", None, None),
    ("role", None, None),
    ("seeds", "seeds", "seeds"),
    ("accuracy % (95% CI)", "accuracy %", "accuracy"),
    ("★", "best", None),
    ("flags", "flags", None),
    ("macro-F1 %", "macro-F1 %", "macro_f1"),
    ("Δ vs baseline (p)", "Δ vs baseline", "delta_vs_baseline"),
    ("trainable params", "trainable params", "trainable_params"),
    ("trainable %", "trainable %", "trainable_percent"),
    ("train s", "train s", "train_seconds"),
    ("features s", "features s", "feature_seconds"),
    ("samples/s", "samples/s", "samples_per_second"),
    ("peak MB", "peak MB", "peak_memory_mb"),
    ("adapter KB", "adapter KB", "adapter_bytes"),
    ("load ms", "load ms", "adapter_load_seconds"),
    ("latency ms", "latency ms", "latency_ms"),
    ("merged latency ms", "merged latency ms", "merged_latency_ms"),
    ("throughput/s", "throughput/s", "throughput"),
    ("merged throughput/s", "merged throughput/s", "merged_throughput"),
    ("reload identical", "reload identical", None),
    ("tuned", "tuned", None),
    ("source", "source", None),
]
COMPACT = {"rank", "method", "seeds", "accuracy % (95% CI)", "★", "flags", "Δ vs baseline (p)",
           "trainable params", "train s", "peak MB"}  # fmt: skip


def results_table(table: Table, compact: bool = False, link_prefix: str = "") -> str:
    """The rigor columns as a sortable HTML table (``compact``: the index's shorter version)."""
    texts = table_texts(table.frame)
    columns = [c for c in SITE_COLUMNS if (not compact or c[0] in COMPACT) and c[1] in (None, *texts)]
    rows = []
    for (_, raw), (_, text) in zip(table.frame.iterrows(), texts.iterrows(), strict=True):
        row = []
        for header, shown, sort in columns:
            if header == "method":
                label = escape(raw["label"], "html")
                row.append(Cell(f'<a href="{link_prefix}#{anchor(raw["label"])}">{label}</a>'))
            elif header == "role":
                row.append(cell(raw["role"]))
            else:
                row.append(cell(text[shown], _number(raw[sort]) if sort else None))
        rows.append(row)
    return html_table([c[0] for c in columns], rows, sortable=True, label=f"leaderboard: {table.title}")


def _plots_block(table: Table, prefix: str = "plots/") -> str:
    files = plot_files(table.slug)
    images = []
    for spec in PLOTS:
        alt = escape(f"test accuracy vs {spec.label} for {table.title}", "markdown")
        images.append(f"![{alt}]({prefix}{files[spec.name]})")
    note = (
        "<p>Each point is a method's mean test accuracy over its seeds, with the 95% confidence "
        "interval as error bars (a hollow marker: one seed, no interval). The dark step line "
        "and rings mark the Pareto frontier: methods no other method beats on both accuracy and "
        "cost. Rows that cost nothing on an axis (the untuned baseline, the majority class) are "
        "dashed horizontal lines, and so are rows not measured on an axis (the majority class has "
        "no model to time). On the latency plot a half-filled marker, joined to its method's point "
        "by a dotted line, is the same model with the adapter merged into the base weights. "
        "Failed rows are not plotted.</p>"
    )
    return "\n\n".join([note, *images])


def _curves_block(table: Table, prefix: str = "plots/") -> str:
    files = curve_plot_files(table.slug, table.curves)
    if not files:
        return (
            "<p>No learning curves: none of this table's completed runs recorded one (their records "
            "were written before peftbench kept learning curves, or their methods train nothing).</p>"
        )
    note = (
        "<p>Per method, its final runs (the configuration in the table above): the line is the mean "
        f"over seeds, the shaded {escape(BAND, 'html')} (no band: one seed). The training loss is "
        "the mean over each logging interval; validation accuracy is measured at a few evenly spaced "
        "steps, the last at the end of training. Seeds are compared on the steps they all have. "
        "Rows without curves (methods that train nothing, older records) are not drawn.</p>"
    )
    alt = {plot.name: f"{plot.label} vs optimiser step for {table.title}" for plot in CURVE_PLOTS}
    images = [f"![{escape(alt[name], 'markdown')}]({prefix}{file})" for name, file in files.items()]
    return "\n\n".join([note, *images])


def _seed_table(records: list[RunRecord]) -> str:
    headers = ["seed", "status", "test accuracy %", "macro-F1 %", "validation accuracy %", "train s",
               "samples/s", "peak MB", "adapter KB", "reload identical", "finished", "error"]  # fmt: skip
    rows = []
    for record in records:
        m, c = record.metrics, record.costs
        reload = record.reload.get("predictions_identical")
        values = [
            (record.seed, record.seed),
            (record.status, None),
            (number(m.get("accuracy"), ".2f", 100), _number(m.get("accuracy"))),
            (number(m.get("macro_f1"), ".2f", 100), _number(m.get("macro_f1"))),
            (number(m.get("validation_accuracy"), ".2f", 100), _number(m.get("validation_accuracy"))),
            (number(c.get("train_seconds"), ".1f"), _number(c.get("train_seconds"))),
            (number(c.get("train_samples_per_second"), ".1f"), _number(c.get("train_samples_per_second"))),
            (number(c.get("peak_memory_mb"), ",.0f"), _number(c.get("peak_memory_mb"))),
            (number(c.get("adapter_bytes"), ",.1f", 1 / 1024), _number(c.get("adapter_bytes"))),
            ("" if reload is None else ("yes" if reload else "NO"), None),
            (record.finished_at, None),
            (record.error or "", None),
        ]
        rows.append([cell(text, sort) for text, sort in values])
    return html_table(headers, rows, sortable=True, label="per-seed values")


def _method_section(table: Table, row: pd.Series, known_methods: Collection[str]) -> str:
    label, method = str(row["label"]), str(row["method"])
    records = table.runs(row)
    interval = "" if pd.isna(row["accuracy_ci95"]) else f" ± {number(row['accuracy_ci95'], '.2f', 100)}"
    accuracy = "failed" if not row["seeds"] else f"{number(row['accuracy'], '.2f', 100)}{interval}"
    seeds = row["accuracy_per_seed"].items()
    per_seed = ", ".join(f"seed {seed}: {number(share, '.2f', 100)}" for seed, share in seeds)
    pairs = [
        ("Role", escape(row["role"], "html")),
        ("Source", escape(row["source"], "html")),
        ("Test accuracy %", escape(f"{accuracy} ({per_seed})" if per_seed else accuracy, "html")),
        ("Hyper-parameters", escape(hp_text(row["hyperparameters"]), "html") or "none"),
        ("Tuning", tuning_text(records)),
        ("Diagnostics", escape(diagnostics.details_text(row), "html")),
    ]
    page_link = f"../methods/{method_slug(method)}.md"
    link = f"\n\n[About {escape(method, 'markdown')}]({page_link})" if method in known_methods else ""
    heading = f"### {escape(label, 'markdown')} {{#{anchor(label)}}}"
    return f"{heading}\n\n{definition_table(pairs)}{link}\n\n{_seed_table(records)}"


def _search_cost_block(table: Table) -> str:
    costs = [search_cost(table.runs(row), table.every) for _, row in table.frame.iterrows()]
    found = [cost for cost in costs if cost is not None]
    return f"{SEARCH_COST_NOTE}\n\n{search_cost_table(found)}" if found else search_cost_table(found)


def table_page(table: Table, known_methods: Collection[str]) -> str:
    """The Markdown page of one (model, dataset) table."""
    intro = (
        f"<p>Generated from {len(table.every)} run records by <code>{escape(REGENERATE, 'html')}</code>; "
        "every number below is a pure function of those records.</p>"
    )
    sections = [_method_section(table, row, known_methods) for _, row in table.frame.iterrows()]
    return page(
        table.title,
        intro,
        "## Setup",
        definition_table(facts.setup_rows(table.final, table.every)),
        "## Results",
        results_table(table),
        f"<p>{escape(LEGEND, 'html')} Click a column header to sort.</p>",
        "## Accuracy and cost",
        _plots_block(table),
        "## Learning curves",
        _curves_block(table),
        "## Search cost",
        _search_cost_block(table),
        "## Per method",
        *sections,
    )


def index_page(tables: list[Table], across: str | None = None, engines: str | None = None) -> str:
    """The leaderboard's front page: every table in short, linking to its full page (and to the
    page ``across`` datasets and the ``engines`` benchmark pages, where there are)."""
    intro = (
        "<p>One table per (model, dataset). Every method was trained and evaluated by the same "
        "harness on the same splits; accuracy is the mean over seeds with a 95% Student-t "
        "interval, ★ marks methods not significantly worse than the best (two-level paired "
        "bootstrap over test examples and seeds), and Δ is measured against the untuned baseline "
        "evaluated by the same code. Each full page states the hardware, dates and package "
        "versions and lists every seed's values. Flags mark rows whose number may not hold: "
        f"<em>{diagnostics.STILL_IMPROVING}</em> (training ended while validation accuracy was still "
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
            f"![{escape(f'test accuracy vs trainable parameters for {table.title}', 'markdown')}]"
            f"(plots/{plot_files(table.slug)['params']})",
        ]
    return page("Leaderboard", *blocks)
