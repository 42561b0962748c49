"""Matched parameter budgets (``--budget``): what a budget is, and the search that sizes a method to it.

Methods are compared at very different sizes unless each is sized to the same number of trainable
parameters. A method names the integer hyper-parameter that scales its size (``Method.size_key``:
LoRA's ``r``, prefix tuning's ``num_virtual_tokens``); ``fit`` finds the value whose real count of
trainable parameters (as the record's ``trainable_params`` counts them) is closest to the target,
by bisection within the key's declared bounds. It assumes the count never falls as the key grows
(true of ranks, prompt lengths and widths), so a few counts find the value.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peftbench.errors import PeftbenchError

#: A method sized within this share of the target is on budget.
TOLERANCE = 0.10
#: Doublings of the size key tried above its default before a budget counts as out of reach.
MAX_DOUBLINGS = 24
#: Doublings in a row that leave the count unchanged before the key counts as not moving it.
FLAT_DOUBLINGS = 3
_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_FORM = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([kmb%]?)$", re.I)
_FORMS = "write e.g. --budget 70000, 70k, 1.2M or 0.3% (of the model's parameters)"


@dataclass(frozen=True)
class Budget:
    """Trainable parameters for every method: a count, or a percentage of the base model's."""

    count: int | None = None
    percent: float | None = None

    def target(self, total_params: int) -> int:
        """The number of trainable parameters asked for, on a model of ``total_params``."""
        return self.count if self.count is not None else max(1, round(total_params * self.percent / 100))

    def __str__(self) -> str:
        return f"{self.count:,}" if self.count is not None else f"{self.percent:g}%"


def parse_budget(value: Any) -> Budget | None:
    """``70000``, ``"70k"``, ``"1.2M"`` or ``"0.3%"`` -> a ``Budget``; one line for anything else."""
    if value is None or isinstance(value, Budget):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):
        raise PeftbenchError(f"budget {value!r} is not a parameter count or a percentage: {_FORMS}")
    text = str(value).strip().replace("_", "").replace(",", "")
    match = _FORM.match(text)
    if match is None:
        raise PeftbenchError(f"budget {value!r} is not a parameter count or a percentage: {_FORMS}")
    amount, suffix = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(amount) or amount <= 0:
        raise PeftbenchError(f"budget {value!r} must be above 0: {_FORMS}")
    if suffix == "%":
        if amount > 100:
            raise PeftbenchError(
                f"budget {value!r} is more than the whole model: use a percentage up to 100%"
            )
        return Budget(percent=amount)
    count = amount * _SUFFIXES[suffix]
    if not suffix and not count.is_integer():
        raise PeftbenchError(f"budget {value!r} is not a whole number of parameters: {_FORMS}")
    if round(count) < 1:
        raise PeftbenchError(f"budget {value!r} is less than one parameter: {_FORMS}")
    return Budget(count=round(count))


@dataclass(frozen=True)
class Fit:
    """The size a method gets: the key's value and the count of trainable parameters it gives."""

    value: int
    achieved: int


def fit(
    count: Callable[[int], int | None], target: int, default: int, low: int, high: float = math.inf
) -> Fit:
    """The value in ``[low, high]`` whose ``count`` is closest to ``target`` (ties: the smaller).

    ``count(value)`` is the real number of trainable parameters at that value, ``None`` where the
    method's hyper-parameters refuse the value (a rule between two of them); ``default`` must be
    accepted. Refused values below it count as too small, above it as too large, so the search
    stays where the method accepts values; a refused value inside a bracket of accepted ones (an
    odd rank where only even ones are taken) gives way to the accepted value nearest to it.
    Monotone counts assumed: the bracket between the last value below the target and the first at
    or above it shrinks by interpolation (exact for counts affine in the value, so two or three
    counts usually do) and by bisection where that is slow.
    """
    seen: dict[int, float] = {}

    def measure(value: int) -> float:
        if value not in seen:
            found = count(value)
            seen[value] = found if found is not None else -math.inf if value < default else math.inf
        return seen[value]

    below, above = low, default
    if measure(default) < target:  # grow until the count reaches the target, or stops growing
        below, above, flat = default, default, 0
        for _ in range(MAX_DOUBLINGS):
            if above >= high or flat == FLAT_DOUBLINGS:
                break
            grown = int(min(max(above * 2, above + 1), high))
            flat = flat + 1 if measure(grown) == measure(above) else 0
            below, above = above, grown
            if measure(above) >= target:
                break
    elif default > low and measure(low) >= target:
        below = above = low
    interpolate = True
    while above - below > 1 and measure(below) < target <= measure(above):
        middle = _guess(below, above, measure(below), measure(above), target) if interpolate else None
        middle = (below + above) // 2 if middle is None else middle
        middle = _accepted_near(middle, below, above, measure)
        if middle is None:  # nothing between them is accepted: the bracket is as tight as it gets
            break
        width = above - below
        below, above = (below, middle) if measure(middle) >= target else (middle, above)
        interpolate = above - below <= width // 2  # a guess that did not halve the bracket: bisect next
    tried = [value for value, found in seen.items() if math.isfinite(found)] or [default]
    best = min(tried, key=lambda value: (abs(measure(value) - target), value))
    return Fit(best, int(measure(best)))


def _accepted_near(middle: int, below: int, above: int, measure: Callable[[int], float]) -> int | None:
    """The value strictly between ``below`` and ``above`` nearest to ``middle`` that is accepted."""
    for distance in range(above - below):
        for value in (middle - distance, middle + distance):
            if below < value < above and math.isfinite(measure(value)):
                return value
    return None


def _guess(below: int, above: int, low: float, high: float, target: int) -> int | None:
    """The value a straight line through the bracket's counts puts at the target (most counts are
    affine in their size key, so this lands on it at once), strictly inside the bracket."""
    if not (math.isfinite(low) and math.isfinite(high)) or high == low:
        return None
    guess = below + round((target - low) * (above - below) / (high - low))
    return min(max(guess, below + 1), above - 1)


def within(achieved: int | None, target: int) -> bool:
    """Whether ``achieved`` trainable parameters are within ``TOLERANCE`` of the ``target``."""
    return achieved is not None and abs(achieved - target) <= TOLERANCE * target
