"""One page per registered method, generated from the registry, plus an index of them all.

Built from ``collect_methods()``, so a newly installed plugin gets its page the next time the
site is generated, with the same facts ``peftbench methods`` prints. Everything a plugin
supplies (description, hyper-parameter names and values, its distribution's name) is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from peftbench.docgen.leaderboard_pages import Table, anchor
from peftbench.docgen.markup import cell, definition_table, html_table, method_slug, page
from peftbench.docgen.support_page import PAGE as SUPPORT_PAGE
from peftbench.docgen.support_page import support_page
from peftbench.formatting import escape, value
from peftbench.methods.base import FEATURES_FACT
from peftbench.methods.hyperparameters import declared, declared_search_range
from peftbench.methods.support import FAMILIES
from peftbench.plugins import MethodRegistry, RegisteredMethod

ROLES = {
    "method": "method",
    "baseline": "baseline: the untuned model every Δ is measured against",
    "reference": "reference row",
}


def ordered(registry: MethodRegistry) -> list[RegisteredMethod]:
    """Methods first, then reference rows; by name within each (stable whatever the plugin order)."""
    return sorted(registry.entries(), key=lambda entry: (entry.method.role != "method", entry.method.name))


def _hyperparameter_table(entry: RegisteredMethod) -> str:
    rows = [
        [cell(row.name), cell(value(row.default)), cell(row.type), cell(row.range), cell(row.help)]
        for row in declared(entry.method.hyperparameter_model())
    ]
    if not rows:
        return "<p>None: this row trains nothing.</p>"
    headers = ["name", "default", "type", "allowed range", "what it does"]
    return html_table(headers, rows, label="hyper-parameters")


def _search_table(entry: RegisteredMethod) -> str:
    grid = entry.method.tuning_grid()
    if not grid:
        return "<p>Nothing to tune.</p>"
    fields = entry.method.hyperparameter_model().model_fields
    rows = [
        [cell(key), cell(", ".join(value(v) for v in values)), cell(_extends(fields.get(key), values))]
        for key, values in grid.items()
    ]
    return html_table(["name", "values tried first", "extended within"], rows, label="search space")


def _extends(field, values: list) -> str:
    """Where ``--tune`` may extend a key past its values, and with which spacing."""
    numbers = {v for v in values if isinstance(v, int | float) and not isinstance(v, bool)}
    if len(numbers) < 2:
        return "not extended"
    found = declared_search_range(field)
    low = "no lower end" if found.low is None else value(found.low)
    high = "no upper end" if found.high is None else value(found.high)
    return f"{low} to {high}, {'log' if found.log else 'linear'} spacing"


def _appearances(name: str, tables: Sequence[Table]) -> str:
    """Links to the leaderboard tables this method has rows in, with its rank there."""
    lines = []
    for table in tables:
        metric = table.metric
        for _, row in table.frame[table.frame["method"] == name].iterrows():
            if not row["seeds"]:
                result = "failed"
            elif pd.isna(row["score"]):  # e.g. a rank correlation of constant predictions
                result = f"unranked (its test {metric.title} is undefined)"
            else:
                result = f"rank {int(row['rank'])}, {metric.text(row['score'])} test {metric.title}"
            target = f"../leaderboard/{table.slug}.md#{anchor(row['label'])}"
            title = table.title if row["label"] == name else f"{table.title}, {row['label']}"
            lines.append(f"- [{escape(title, 'markdown')}]({target}): {escape(result, 'markdown')}")
    return "\n".join(lines) or "Not in the published records yet."


def _own_numbers(name: str, tables: Sequence[Table]) -> str:
    """What the method reported about itself (``Method.report``), mean over seeds, per table."""
    lines = []
    for table in tables:
        for _, row in table.frame[table.frame["method"] == name].iterrows():
            numbers = row.get("method_metrics")
            if isinstance(numbers, dict) and numbers:
                title = table.title if row["label"] == name else f"{table.title}, {row['label']}"
                shown = ", ".join(f"{key} {value(number_)}" for key, number_ in sorted(numbers.items()))
                lines.append(f"- {escape(title, 'markdown')}: {escape(shown, 'markdown')}")
    return "\n".join(lines)


def _support(method) -> str:
    """``GPT-2: no, BERT-like: yes, ...`` linking to the matrix, where the reasons are."""
    cells = [f"{label}: {'no' if key in method.unsupported else 'yes'}" for key, label in FAMILIES.items()]
    return f'{escape(", ".join(cells), "html")} (<a href="{SUPPORT_PAGE}.md">why</a>)'


def method_page(entry: RegisteredMethod, tables: Sequence[Table]) -> str:
    method = entry.method
    kind = type(method)
    role = ROLES.get(method.role, method.role) + (", run in every sweep" if method.always_run else "")
    facts = [
        ("Name", f"<code>{escape(method.name, 'html')}</code>"),
        ("Role", escape(role, "html")),
        ("Source", escape(entry.source, "html")),
        ("Implementation", f"<code>{escape(f'{kind.__module__}.{kind.__qualname__}', 'html')}</code>"),
        ("Trains", _support(method)),
    ]
    if method.trains_on_features:
        facts.append(("Trains on", escape(FEATURES_FACT, "html") + " (<code>trains_on_features</code>)"))
    own = _own_numbers(method.name, tables)
    usage = f"peftbench run --model minilm --methods {method.name} --out runs/"
    if method.trains:
        usage += f"\npeftbench run --model minilm --methods {method.name} --tune --num-seeds 3 --out runs/"
    return page(
        method.name,
        f'<p class="pb-description">{escape(method.description, "html")}</p>',
        definition_table(facts),
        "## Hyper-parameters",
        "<p>Override any of them with <code>--hp NAME.KEY=VALUE</code>; an unknown key, a wrong "
        "type or a value out of range is refused before any training.</p>",
        _hyperparameter_table(entry),
        "## Search space",
        "<p>What <code>--tune</code> tries first (successive halving by default, or every value "
        "with <code>--search grid</code>), choosing by the mean validation score over "
        "<code>--tune-seeds</code> seeds in the task's primary metric (accuracy for a classification, "
        "Spearman for a regression, or <code>--metric</code>). Where the best is the smallest or "
        "largest value tried, the next one beyond is tried too, with the same spacing, within the "
        "range shown.</p>",
        _search_table(entry),
        f"<p>Where these values come from: {escape(method.search_space_source, 'html')}</p>"
        if method.trains and method.search_space_source
        else "",
        "## Run it",
        _usage(usage),
        "## On the leaderboard",
        _appearances(method.name, tables),
        *(
            ["## Its own numbers", "What the method reported about what it trained, mean over seeds.", own]
            if own
            else []
        ),
    )


def _usage(command: str) -> str:
    """A shell block; the name in it is a validated identifier, the rest is fixed text."""
    return "```bash\n" + command + "\n```"


def index_page(registry: MethodRegistry) -> str:
    """Every registered method with its description and source, methods before reference rows."""
    lines = ["| method | role | description | source |", "|---|---|---|---|"]
    for entry in ordered(registry):
        method = entry.method
        link = f"[{escape(method.name, 'markdown')}]({method_slug(method.name)}.md)"
        lines.append(
            f"| {link} | {escape(method.role, 'markdown')} | {escape(method.description, 'markdown')} "
            f"| {escape(entry.source, 'markdown')} |"
        )
    intro = (
        "<p>Every method this installation knows, built-in or from a plugin package, generated "
        "from the method registry: install a plugin and regenerate, and it gets its page. "
        "<code>peftbench methods</code> prints the same facts. Which model families each one "
        f'trains: <a href="{SUPPORT_PAGE}.md">Model support</a>.</p>'
    )
    return page("Methods", intro, "\n".join(lines))


def pages(registry: MethodRegistry, tables: Sequence[Table]) -> dict[str, str]:
    """Relative path -> Markdown for the methods index and one page per method.

    A method named ``index`` gets ``methods/index-method.md`` (see ``method_slug``), never the
    index's own page.
    """
    out = {
        "methods/index.md": index_page(registry),
        f"methods/{SUPPORT_PAGE}.md": support_page(ordered(registry)),
    }
    for entry in ordered(registry):
        out[f"methods/{method_slug(entry.method.name)}.md"] = method_page(entry, tables)
    return out
