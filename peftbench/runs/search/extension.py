"""A search that cannot stop at an edge: where the best value of a numeric key is the smallest or
largest tried, the next value beyond it is tried too (the same spacing: a ratio for keys searched
on a log scale, like learning rates, else a difference), until the best is inside the values
tried, the key's declared search range ends there (``at bound``), or ``--extension-limit`` values
have been added to the key (``at limit``).

The new candidate is the best one with that key moved one step further, so extending costs one
candidate per key and step, never a new grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic.fields import FieldInfo

from peftbench.errors import PeftbenchError
from peftbench.methods.hyperparameters import SearchRange, declared_search_range

INSIDE, AT_BOUND, AT_LIMIT = "inside", "at bound", "at limit"
STOPS = (INSIDE, AT_BOUND, AT_LIMIT)


@dataclass
class Extension:
    """The numeric keys of one search and how far each has been extended."""

    grid: dict[str, list[Any]]
    fields: dict[str, FieldInfo]
    limit: int
    check: Callable[[dict[str, Any]], None]  # raises PeftbenchError for a combination the method refuses
    added: dict[str, int] = field(default_factory=dict)  # values added per key so far

    @property
    def keys(self) -> list[str]:
        """Keys with two or more numeric values: the ones with a spacing to extend by."""
        return [key for key, values in self.grid.items() if len({v for v in values if _numeric(v)}) >= 2]

    def beyond(self, best: dict[str, Any], tried: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The candidates to add because ``best`` sits at an edge of the values ``tried``: one per
        key that can still be extended, in the grid's key order (none: every key is settled)."""
        new = []
        for key in self.keys:
            value, stop = self._next(key, best, tried)
            if stop is None:
                self.added[key] = self.added.get(key, 0) + 1
                new.append({**best, key: value})
        return new

    def stops(self, chosen: dict[str, Any], tried: Sequence[dict[str, Any]]) -> dict[str, str]:
        """Why the search stopped, per extendable key: ``inside``, ``at bound`` or ``at limit``."""
        return {key: self._next(key, chosen, tried)[1] or AT_LIMIT for key in self.keys}

    def _next(
        self, key: str, best: dict[str, Any], tried: Sequence[dict[str, Any]]
    ) -> tuple[Any, str | None]:
        """The value to try next beyond ``best[key]``, or ``None`` with the reason there is none."""
        values = sorted({c[key] for c in tried if _numeric(c.get(key))})
        here = best[key]
        if len(values) < 2 or values[0] < here < values[-1]:
            return None, INSIDE
        if self.added.get(key, 0) >= self.limit:
            return None, AT_LIMIT
        upward = here == values[-1]
        neighbour = values[-2] if upward else values[1]
        limits = declared_search_range(self.fields.get(key))
        value = _step(here, neighbour, limits, isinstance(here, int))
        if value is None:
            return None, AT_BOUND
        try:
            self.check({**best, key: value})
        except PeftbenchError:  # the method's own bounds or rules end the range here
            return None, AT_BOUND
        return value, None


def _step(here: Any, neighbour: Any, limits: SearchRange, whole: bool) -> Any:
    """One step beyond ``here``, away from ``neighbour``, clipped to the range (``None``: at its end)."""
    upward = here > neighbour
    if limits.log and here > 0 and neighbour > 0:
        value = here * here / neighbour
    else:
        value = here + (here - neighbour)
    bound = limits.high if upward else limits.low
    if bound is not None and (value > bound if upward else value < bound):
        value = bound
    if whole:
        value = math.ceil(value) if upward else math.floor(value)
        if bound is not None:
            value = min(value, math.floor(bound)) if upward else max(value, math.ceil(bound))
    else:
        value = float(f"{value:.3g}")  # 0.0333, not 0.03333333333333333
    if (value <= here) if upward else (value >= here):
        return None  # the range ends at ``here``
    return value


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
