"""The *Model support* page: which registered method trains which model family, and why not.

Generated from each method's ``unsupported`` declaration (``peftbench.methods.support``), the same
one a sweep refuses a pair by; the default test suite probes every cell on a tiny model of the
family (``tests/test_model_support.py``), so a declaration that no longer holds fails the tests.
"""

from __future__ import annotations

from peftbench.docgen.markup import method_slug, page
from peftbench.formatting import escape
from peftbench.methods.support import FAMILIES, FAMILY_NOTES

#: Its place among the method pages: a method name holds no ``-``, so no method's page can take it.
PAGE = "model-support"


def support_cell(method, family: str) -> str:
    """``yes``, or ``no: the reason`` (escaped for a Markdown table)."""
    reason = method.unsupported.get(family)
    return "yes" if reason is None else f"**no**: {escape(reason, 'markdown')}"


def support_page(ordered_entries) -> str:
    """The matrix: one row per method (in the methods index's order), one column per family."""
    families = list(FAMILIES)
    lines = [
        "| method | " + " | ".join(FAMILIES[f] for f in families) + " |",
        "|---|" + "---|" * len(families),
    ]
    for entry in ordered_entries:
        method = entry.method
        link = f"[{escape(method.name, 'markdown')}]({method_slug(method.name)}.md)"
        lines.append(f"| {link} | " + " | ".join(support_cell(method, f) for f in families) + " |")
    notes = "\n".join(f"- **{FAMILIES[f]}**: {escape(FAMILY_NOTES[f], 'markdown')}." for f in families)
    intro = (
        "Which method trains which family of models, as each method declares it. A sweep refuses "
        "a pair marked **no** in one line before anything trains, naming the method, the model and "
        "the reason. peftbench tells the family from the loaded model itself:"
    )
    checked = (
        "Every cell is checked by the default test suite: the method trains a tiny model of the "
        "family for two steps (every parameter it trains must change), its saved adapter reloads "
        "onto a fresh base model to the same predictions, padding changes no prediction, and its "
        "merged model predicts as the loaded one. A cell marked **no** must fail that probe. "
        "Models of other families (T5, BART, ...) are not refused; a method that cannot handle one "
        "fails its runs with a sentence saying why."
    )
    return page("Model support", intro, notes, checked, "\n".join(lines))
