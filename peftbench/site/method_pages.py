"""One page per registered method, generated from the registry, plus an index of them all.

Built from ``collect_methods()``, so a newly installed plugin gets its page the next time the
site is generated, with the same facts ``peftbench methods`` prints. Everything a plugin
supplies (description, hyper-parameter names and values, its distribution's name) is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

from peftbench.methods.base import TRAINING_BOUNDS
from peftbench.plugins import MethodRegistry, RegisteredMethod
from peftbench.site.leaderboard_pages import Table, anchor
from peftbench.site.markup import (
    cell,
    definition_table,
    format_value,
    html_table,
    html_text,
    md_text,
    method_slug,
    page,
)

ROLES = {
    "method": "method",
    "baseline": "baseline: the untuned model every Δ is measured against",
    "reference": "reference row",
}


def ordered(registry: MethodRegistry) -> list[RegisteredMethod]:
    """Methods first, then reference rows; by name within each (stable whatever the plugin order)."""
    return sorted(registry.entries(), key=lambda entry: (entry.method.role != "method", entry.method.name))


def _hyperparameter_table(entry: RegisteredMethod) -> str:
    method = entry.method
    values = method.hyperparameters()
    if not values:
        return "<p>None: this row trains nothing.</p>"
    bounds = {**TRAINING_BOUNDS, **method.bounds}
    rows = []
    for key, value in values.items():
        low, high = bounds.get(key, (None, None))
        kind = "any" if value is None else type(value).__name__
        rows.append([cell(key), cell(format_value(value)), cell(kind), cell(_span(low, high))])
    return html_table(["name", "default", "type", "allowed range"], rows, label="hyper-parameters")


def _span(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{format_value(low)} to {format_value(high)}"
    if low is not None:
        return f"≥ {format_value(low)}"
    return "" if high is None else f"≤ {format_value(high)}"


def _search_table(entry: RegisteredMethod) -> str:
    grid = entry.method.tuning_grid()
    if not grid:
        return "<p>Nothing to tune.</p>"
    rows = [[cell(key), cell(", ".join(format_value(v) for v in values))] for key, values in grid.items()]
    return html_table(["name", "values tried"], rows, label="search space")


def _appearances(name: str, tables: Sequence[Table]) -> str:
    """Links to the leaderboard tables this method has rows in, with its rank there."""
    lines = []
    for table in tables:
        rows = table.frame[table.frame["method"].astype(str).str.split("#").str[0] == name]
        for _, row in rows.iterrows():
            if row["seeds"]:
                result = f"rank {int(row['rank'])}, {100 * row['accuracy']:.2f}% test accuracy"
            else:
                result = "failed"
            target = f"../leaderboard/{table.slug}.md#{anchor(row['method'])}"
            lines.append(f"- [{md_text(table.title)}]({target}): {md_text(result)}")
    return "\n".join(lines) or "Not in the published records yet."


def method_page(entry: RegisteredMethod, tables: Sequence[Table]) -> str:
    method = entry.method
    kind = type(method)
    role = ROLES.get(method.role, method.role) + (", run in every sweep" if method.always_run else "")
    facts = [
        ("Name", f"<code>{html_text(method.name)}</code>"),
        ("Role", html_text(role)),
        ("Source", html_text(entry.source)),
        ("Implementation", f"<code>{html_text(f'{kind.__module__}.{kind.__qualname__}')}</code>"),
    ]
    usage = f"peftbench run --model minilm --methods {method.name} --out runs/"
    if method.trains:
        usage += f"\npeftbench run --model minilm --methods {method.name} --tune --num-seeds 3 --out runs/"
    return page(
        method.name,
        f'<p class="pb-description">{html_text(method.description)}</p>',
        definition_table(facts),
        "## Hyper-parameters",
        "<p>Override any of them with <code>--hp NAME.KEY=VALUE</code>; an unknown key, a wrong "
        "type or a value out of range is refused before any training.</p>",
        _hyperparameter_table(entry),
        "## Search space",
        "<p>What <code>--tune</code> tries with the first seed, choosing by validation accuracy.</p>",
        _search_table(entry),
        "## Run it",
        _usage(usage),
        "## On the leaderboard",
        _appearances(method.name, tables),
    )


def _usage(command: str) -> str:
    """A shell block; the name in it is a validated identifier, the rest is fixed text."""
    return "```bash\n" + command + "\n```"


def index_page(registry: MethodRegistry) -> str:
    """Every registered method with its description and source, methods before reference rows."""
    lines = ["| method | role | description | source |", "|---|---|---|---|"]
    for entry in ordered(registry):
        method = entry.method
        link = f"[{md_text(method.name)}]({method_slug(method.name)}.md)"
        lines.append(
            f"| {link} | {md_text(method.role)} | {md_text(method.description)} | {md_text(entry.source)} |"
        )
    intro = (
        "<p>Every method this installation knows, built-in or from a plugin package, generated "
        "from the method registry: install a plugin and regenerate, and it gets its page. "
        "<code>peftbench methods</code> prints the same facts.</p>"
    )
    return page("Methods", intro, "\n".join(lines))


def pages(registry: MethodRegistry, tables: Sequence[Table]) -> dict[str, str]:
    """Relative path -> Markdown for the methods index and one page per method.

    A method named ``index`` gets ``methods/index-method.md`` (see ``method_slug``), never the
    index's own page.
    """
    out = {"methods/index.md": index_page(registry)}
    for entry in ordered(registry):
        out[f"methods/{method_slug(entry.method.name)}.md"] = method_page(entry, tables)
    return out
