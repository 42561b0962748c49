"""How values and names are written for people: numbers, hyper-parameter values, and escaping.

Every view (progress lines, ``peftbench methods``, the terminal leaderboard, the generated site)
writes numbers and names through these functions, so a value reads the same everywhere.

Names, descriptions and label names come from plugins, datasets and record files, so none of
them may turn into markup: ``escape`` makes any text safe for the place it goes (HTML, Markdown,
or a Markdown table read in a terminal).
"""

from __future__ import annotations

import html
import math
from typing import Any, Literal

# Markdown (and the extensions mkdocs.yml enables) gives these characters meaning; as numeric
# entities they are plain characters that Markdown leaves alone and the browser shows as text.
_MARKDOWN_SPECIALS = "\\`*_[]{}#|!~^=+:$"
_HTML_SPECIALS = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}
# One pass over the plain text: HTML's own specials become entities (no raw HTML), Markdown's
# become numeric entities. A single ``translate`` never re-escapes an entity it produced (escaping
# HTML first and then ``#`` turned an apostrophe's ``&#x27;`` into ``&&#35;x27;``). Quotes stay as
# they are: they mean nothing to Markdown, and Markdown escapes them itself in attributes.
_ESCAPES = {
    "markdown": {**_HTML_SPECIALS, **{ord(c): f"&#{ord(c)};" for c in _MARKDOWN_SPECIALS}},
    # A terminal reads the table as text: only what would break it (raw HTML, a cell's pipe).
    "table": {**_HTML_SPECIALS, ord("|"): "\\|"},
}


def plain(value: object) -> str:
    """Text on one line (no text may start a Markdown block); ``None`` and NaN are empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value).split())


def escape(value: object, into: Literal["html", "markdown", "table"]) -> str:
    """``value`` as plain text that shows as itself in an HTML element or attribute, in Markdown,
    or in a Markdown table meant to be read in a terminal too."""
    if into == "html":
        return html.escape(plain(value), quote=True)
    return plain(value).translate(_ESCAPES[into])


def number(value: Any, spec: str = ".2f", scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``spec``; missing (None, NaN, NA) is empty, never 0."""
    try:
        missing = value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        missing = True
    return "" if missing else format(float(value) * scale, spec)


def value(item: Any) -> str:
    """A hyper-parameter or setting value: floats short but still floats (``0.0003``, ``0.0``),
    lists bracketed, the rest as Python writes it."""
    if isinstance(item, bool) or item is None:
        return str(item)
    if isinstance(item, float):
        text = f"{item:g}"
        return text if any(c in text for c in ".en") else f"{text}.0"  # 0.0, not 0: it is a float
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(value(v) for v in item) + "]"
    return str(item)


def hp_text(values: dict[str, Any], notes: dict[str, str] | None = None) -> str:
    """``r=8, learning_rate=0.001``; a key with a note gets it in brackets: ``(at bound)``."""
    notes = notes or {}
    return ", ".join(f"{k}={value(v)}" + (f" ({notes[k]})" if k in notes else "") for k, v in values.items())


def p_text(p: float) -> str:
    """A bootstrap p-value as people should read it: 0 resamples against means below 1/1000, not 0."""
    return "p<0.001" if p < 0.0005 else f"p={p:.3f}"


def count_text(count: int) -> str:
    """A parameter count, short: ``950``, ``66.0K``, ``1.2M``, ``7.0B``."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(count) >= size:
            return f"{count / size:.1f}{suffix}"
    return str(count)


def budget_text(budget: dict[str, Any] | None) -> str:
    """A record's ``budget`` for a table: ``66.0K of 68.1K`` on budget, ``off budget: 12.3K of
    68.1K`` where the method could not be sized to it; empty for runs without a budget."""
    if not isinstance(budget, dict) or budget.get("target") is None:
        return ""
    achieved = budget.get("achieved")
    shown = f"{'?' if achieved is None else count_text(achieved)} of {count_text(budget['target'])}"
    return shown if budget.get("within") else f"off budget: {shown}"
