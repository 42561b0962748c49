"""How ``--tune`` chooses: search strategies behind one ask/tell interface (``base.Search``).

A strategy is one module of this package defining a ``Search`` subclass with a ``name``; every
module here is imported when the package is, so the class registers itself and ``--search NAME``
finds it. Built in: ``halving`` (successive halving, the default) and ``grid`` (exhaustive).
"""

from __future__ import annotations

import importlib
import pkgutil

from peftbench.errors import UnknownNameError
from peftbench.runs.search.base import STRATEGIES, Search, SearchSetup, Together

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def strategy_names() -> list[str]:
    return sorted(STRATEGIES)


def make_search(name: str, setup: SearchSetup) -> Search:
    if name not in STRATEGIES:
        raise UnknownNameError(f"unknown search '{name}'; known searches: {', '.join(strategy_names())}")
    return STRATEGIES[name](setup)


__all__ = ["Search", "SearchSetup", "Together", "make_search", "strategy_names"]
