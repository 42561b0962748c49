"""mkdocs hook: expand ``*`` patterns in ``nav`` to the pages that exist, sorted.

Method and leaderboard pages are generated (a newly installed plugin gets a page), so the nav
cannot list them by hand; ``methods/*.md`` in mkdocs.yml lists whatever is there. A page the
nav already names elsewhere (``methods/index.md``) is not listed twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _explicit(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return set() if "*" in nav else {nav}
    if isinstance(nav, dict):
        return set().union(*(_explicit(value) for value in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_explicit(item) for item in nav)) if nav else set()
    return set()


def _expand(nav: Any, docs: Path, named: set[str]) -> Any:
    if isinstance(nav, dict):
        return {key: _expand(value, docs, named) for key, value in nav.items()}
    if isinstance(nav, list):
        expanded = []
        for item in nav:
            if isinstance(item, str) and "*" in item:
                pages = sorted(path.relative_to(docs).as_posix() for path in docs.glob(item))
                expanded += [page for page in pages if page not in named]
            else:
                expanded.append(_expand(item, docs, named))
        return expanded
    return nav


def on_config(config: Any) -> Any:
    if config["nav"]:
        config["nav"] = _expand(config["nav"], Path(config["docs_dir"]), _explicit(config["nav"]))
    return config
