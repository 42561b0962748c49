"""Leaderboard pages: one per (model, dataset) table, and an index of every table.

Each table page states its setup (from the records), shows the rigor columns of the leaderboard
frame in a sortable table, the accuracy-vs-cost plots and, per method, every seed's values.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import pandas as pd

from peftbench.leaderboard import GROUP, LEGEND, Leaderboard, config_key, display_names, format_table
from peftbench.records import RunRecord
from peftbench.site import facts
from peftbench.site.markup import (
    Cell,
    cell,
    definition_table,
    format_value,
    html_table,
    html_text,
    md_text,
    method_slug,
    page,
    slug,
)
from peftbench.site.plots import PLOTS, plot_files
from peftbench.tuning import edge_keys

REGENERATE = "peftbench docs --records leaderboard/records --site docs"


@dataclass(frozen=True)
class Table:
    """One (model, dataset) leaderboard table and the records behind it."""

    model: str
    dataset: str
    slug: str
    frame: pd.DataFrame  # rows of Leaderboard.to_frame() for this (model, dataset)
    runs: dict[str, list[RunRecord]]  # display name -> final records, by seed
    final: list[RunRecord]
    every: list[RunRecord]  # tuning candidates too

    @property
    def title(self) -> str:
        return f"{self.model} on {self.dataset}"


def split_tables(board: Leaderboard) -> list[Table]:
    """The board's (model, dataset) tables, each with a unique file-name slug."""
    frame = board.to_frame()
    final = [record for record in board.records if record.stage == "final"]
    names = _display_names(final)
    tables, used = [], {"index"}  # leaderboard/index.md is the front page
    for (model, dataset), group in frame.groupby(GROUP, sort=True):
        base = slug(f"{model}-{dataset}")
        name = base
        while name in used:
            name = f"{name}-{len(used)}"
        used.add(name)
        mine = [r for r in final if (r.model, r.dataset) == (model, dataset)]
        runs: dict[str, list[RunRecord]] = {}
        for record in sorted(mine, key=lambda r: (r.seed, r.run_id)):
            runs.setdefault(names[record.run_id], []).append(record)
        every = [r for r in board.records if (r.model, r.dataset) == (model, dataset)]
        tables.append(Table(model, dataset, name, group.reset_index(drop=True), runs, mine, every))
    return tables


def _display_names(final: list[RunRecord]) -> dict[str, str]:
    """run id -> the method name the leaderboard shows (config-suffixed when a method has several)."""
    keys = pd.DataFrame(
        [(r.model, r.dataset, r.method, config_key(r), r.run_id) for r in final],
        columns=["model", "dataset", "method", "config", "run_id"],
    )
    if keys.empty:
        return {}
    shown = display_names(keys)
    return dict(zip(keys["run_id"], shown, strict=True))


def anchor(method: str) -> str:
    return "m-" + slug(method)


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def results_table(table: Table, compact: bool = False, link_prefix: str = "") -> str:
    """The rigor columns as a sortable HTML table (``compact``: the index's shorter version)."""
    shown = format_table(table.frame)
    columns = [
        ("rank", "rank", "rank"),
        ("method", None, None),
        ("role", None, None),
        ("seeds", "seeds", "seeds"),
        ("accuracy % (95% CI)", "accuracy %", "accuracy"),
        ("★", "best", None),
        ("macro-F1 %", "macro-F1 %", "macro_f1"),
        ("Δ vs baseline (p)", "Δ vs baseline", "delta_vs_baseline"),
        ("trainable params", "trainable params", "trainable_params"),
        ("trainable %", "trainable %", "trainable_percent"),
        ("train s", "train s", "train_seconds"),
        ("samples/s", "samples/s", "samples_per_second"),
        ("peak MB", "peak MB", "peak_memory_mb"),
        ("adapter KB", "adapter KB", "adapter_bytes"),
        ("reload identical", "reload identical", None),
        ("tuned", None, None),
        ("source", None, None),
    ]
    if compact:
        keep = {"rank", "method", "seeds", "accuracy % (95% CI)", "★", "Δ vs baseline (p)",
                "trainable params", "train s", "peak MB"}  # fmt: skip
        columns = [column for column in columns if column[0] in keep]
    rows = []
    for (_, raw), (_, text) in zip(table.frame.iterrows(), shown.iterrows(), strict=True):
        row = []
        for header, shown_column, sort_column in columns:
            if header == "method":
                label = html_text(raw["method"])
                row.append(Cell(f'<a href="{link_prefix}#{anchor(raw["method"])}">{label}</a>'))
            elif header in ("role", "tuned", "source"):  # text from records: escaped, never sorted as numbers
                row.append(cell(raw[header] if isinstance(raw[header], str) else ""))
            else:
                row.append(cell(text[shown_column], _number(raw[sort_column]) if sort_column else None))
        rows.append(row)
    return html_table([c[0] for c in columns], rows, sortable=True, label=f"leaderboard: {table.title}")


def _plots_block(table: Table, prefix: str = "plots/") -> str:
    files = plot_files(table.slug)
    images = []
    for spec in PLOTS:
        alt = md_text(f"test accuracy vs {spec.label} for {table.title}")
        images.append(f"![{alt}]({prefix}{files[spec.name]})")
    note = (
        "<p>Each point is a method's mean test accuracy over its seeds, with the 95% confidence "
        "interval as error bars (a hollow marker: one seed, no interval). The dark step line "
        "and rings mark the Pareto frontier: methods no other method beats on both accuracy and "
        "cost. Rows that cost nothing on an axis (the untuned baseline, the majority class) are "
        "dashed horizontal lines. Failed rows are not plotted.</p>"
    )
    return "\n\n".join([note, *images])


def _percent(value: object) -> str:
    number = _number(value)
    return "" if number is None else f"{100 * number:.2f}"


def _seed_table(records: list[RunRecord]) -> str:
    headers = ["seed", "status", "test accuracy %", "macro-F1 %", "validation accuracy %", "train s",
               "samples/s", "peak MB", "adapter KB", "reload identical", "finished", "error"]  # fmt: skip
    rows = []
    for record in records:
        m, c = record.metrics, record.costs
        adapter = _number(c.get("adapter_bytes"))
        reload = record.reload.get("predictions_identical")
        values = [
            (record.seed, record.seed),
            (record.status, None),
            (_percent(m.get("accuracy")), _number(m.get("accuracy"))),
            (_percent(m.get("macro_f1")), _number(m.get("macro_f1"))),
            (_percent(m.get("validation_accuracy")), _number(m.get("validation_accuracy"))),
            (_fixed(c.get("train_seconds"), ".1f"), _number(c.get("train_seconds"))),
            (_fixed(c.get("train_samples_per_second"), ".1f"), _number(c.get("train_samples_per_second"))),
            (_fixed(c.get("peak_memory_mb"), ",.0f"), _number(c.get("peak_memory_mb"))),
            (_fixed(None if adapter is None else adapter / 1024, ",.1f"), adapter),
            ("" if reload is None else ("yes" if reload else "NO"), None),
            (record.finished_at, None),
            (record.error or "", None),
        ]
        rows.append([cell(text, sort) for text, sort in values])
    return html_table(headers, rows, sortable=True, label="per-seed values")


def _fixed(value: object, spec: str) -> str:
    number = _number(value)
    return "" if number is None or math.isnan(number) else format(number, spec)


def _tuning(records: list[RunRecord]) -> str:
    """The candidates tried on validation and the one chosen, from the final records' ``tuning``."""
    tuning = next((record.tuning for record in records if record.tuning), None)
    if not tuning:
        return "not tuned (defaults or --hp)"
    chosen = tuning.get("chosen") or {}
    lines = []
    for candidate in tuning.get("candidates") or []:
        hp = ", ".join(f"{k}={format_value(v)}" for k, v in (candidate.get("hyperparameters") or {}).items())
        accuracy = _percent(candidate.get("validation_accuracy"))
        score = f"validation accuracy {accuracy}%" if accuracy else str(candidate.get("status"))
        mark = " (chosen)" if candidate.get("hyperparameters") == chosen else ""
        lines.append(f"{hp}: {score}{mark}")
    if tuning.get("note"):
        lines.append(str(tuning["note"]))
    for key in edge_keys(tuning):
        lines.append(f"{key}: the choice is the end of its search range; the best value may lie beyond it")
    return "<br>".join(html_text(line) for line in lines) or "no candidates"


def _method_section(table: Table, row: pd.Series, known_methods: Collection[str]) -> str:
    name = str(row["method"])
    records = table.runs.get(name, [])
    first = records[0] if records else None
    chosen = first.hyperparameters if first else {}
    hyperparameters = ", ".join(f"{k}={format_value(v)}" for k, v in chosen.items())
    interval = "" if pd.isna(row["accuracy_ci95"]) else f" ± {100 * row['accuracy_ci95']:.2f}"
    accuracy = "failed" if not row["seeds"] else f"{100 * row['accuracy']:.2f}{interval}"
    seeds = row["accuracy_per_seed"].items()
    per_seed = ", ".join(f"seed {seed}: {100 * value:.2f}" for seed, value in seeds)
    pairs = [
        ("Role", html_text(row["role"])),
        ("Source", html_text(row["source"])),
        ("Test accuracy %", html_text(f"{accuracy} ({per_seed})" if per_seed else accuracy)),
        ("Hyper-parameters", html_text(hyperparameters) or "none"),
        ("Tuning", _tuning(records)),
    ]
    method = first.method if first else name
    page_link = f"../methods/{method_slug(method)}.md"
    link = f"\n\n[About {md_text(method)}]({page_link})" if method in known_methods else ""
    heading = f"### {md_text(name)} {{#{anchor(name)}}}"
    return f"{heading}\n\n{definition_table(pairs)}{link}\n\n{_seed_table(records)}"


def table_page(table: Table, known_methods: Collection[str]) -> str:
    """The Markdown page of one (model, dataset) table."""
    intro = (
        f"<p>Generated from {len(table.every)} run records by <code>{html_text(REGENERATE)}</code>; "
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
        f"<p>{html_text(LEGEND)} Click a column header to sort.</p>",
        "## Accuracy and cost",
        _plots_block(table),
        "## Per method",
        *sections,
    )


def index_page(tables: list[Table]) -> str:
    """The leaderboard's front page: every table in short, linking to its full page."""
    intro = (
        "<p>One table per (model, dataset). Every method was trained and evaluated by the same "
        "harness on the same splits; accuracy is the mean over seeds with a 95% Student-t "
        "interval, ★ marks methods not significantly worse than the best (paired bootstrap over "
        "test examples), and Δ is measured against the untuned baseline evaluated by the same "
        "code. Each full page states the hardware, dates and package versions and lists every "
        "seed's values.</p>"
    )
    regenerate = f"Regenerate these pages from the committed records:\n\n```bash\n{REGENERATE}\n```"
    blocks = [intro, regenerate]
    for table in tables:
        blocks += [
            f"## {md_text(table.title)}",
            f"<p>{facts.summary_line(table.final, table.every)}</p>",
            results_table(table, compact=True, link_prefix=f"{table.slug}/"),
            f"[Full table, plots and per-seed values]({table.slug}.md)",
            f"![{md_text(f'test accuracy vs trainable parameters for {table.title}')}]"
            f"(plots/{plot_files(table.slug)['params']})",
        ]
    return page("Leaderboard", *blocks)
