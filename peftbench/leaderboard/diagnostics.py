"""Diagnostics: flags on a leaderboard row whose number may not hold, by rules fixed here.

``still improving``: training stopped while the validation metric was still clearly improving, so
more training would likely move the number. A seed is *still rising* when the last point of its
validation curve is better (in the metric's direction) than every earlier point by more than
``RISE_STANDARD_ERRORS`` standard errors of that last point: the bootstrap standard error of the
metric on the validation split at that point, which each run trained to its maximum records
(``metrics["validation_standard_error"]``, ``Metric.standard_error``: for an accuracy ``p`` on
``n`` examples ``sqrt(p (1 - p) / n)``; for F1, MCC or a correlation, over fixed-seed resamples).
Comparing with the best earlier point (not the previous one) ignores a curve that dips and
recovers; the standard error is that of one measurement, which is larger than the noise of a
difference between two checkpoints of one run scored on the same examples as long as they
disagree on few of them (the usual case late in training), so only a clear rise counts. The row
is flagged when most of its seeds (more than half of those judged) are still rising: one seed's
late jump may be that seed's luck, a majority is the configuration's.

Records written before runs kept that standard error are judged where the metric is accuracy,
whose error is read from the values themselves: each accuracy is ``k / n``, so the least common
denominator of a run's recorded validation accuracies is ``n`` (or, rarely, a divisor of it: a
smaller ``n``, a larger standard error, fewer flags — never more); other metrics' older rows are
not judged (a last point that is no improvement at all is still *not rising*).

``unstable``: the seeds disagree by more than the test set can resolve. The row is flagged when
the standard deviation of its seeds' test scores (the table's metric) is more than
``SPREAD_FACTOR`` times the standard error the bootstrap over test examples gives one seed's score
(the root mean square over its seeds, ``stats.bootstrap_standard_error``); the per-seed values are
shown with it.

Timings measured under other load: a run's record keeps the cores' worth of CPU other processes
used while it ran (``costs.other_cpu_share``, ``environment.MachineLoad``). Where some completed
run of a row had more than ``OTHER_LOAD_LIMIT`` of it, every timing of the row (seconds,
throughput, latency) is marked ``UNDER_LOAD``: it is not comparable with timings taken on an
otherwise idle machine, and it is shown, not hidden or silently mixed with the others.

Rows without what a rule needs (one seed; no curves, as in records older than learning curves
or methods that train nothing; no per-example test results) are not judged: ``<NA>``, no flag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from peftbench.leaderboard.stats import Outcomes, bootstrap_standard_error, proportion_standard_error
from peftbench.tasks.metrics import Metric

STILL_IMPROVING = "still improving"
UNSTABLE = "unstable"
#: The metric whose standard error the rising rule can read from its values, for records that did
#: not keep one (``RunRecord.curves["validation_accuracy"]`` and ``metrics``).
RISING_METRIC = "accuracy"
#: A seed's last validation point must beat every earlier one by more than this many standard errors.
RISE_STANDARD_ERRORS = 1.0
#: A row is unstable when its seeds' standard deviation is more than this times the test set's error.
SPREAD_FACTOR = 2.0
#: Reading ``n`` from an accuracy ``k / n``: splits up to this size; a value further than
#: ``_EXACT`` from every fraction with such a denominator is not an accuracy.
MAX_EXAMPLES = 10**6
_EXACT = 1e-15
#: "More than" a threshold: a value equal to it up to rounding is not more (a rise of exactly one
#: standard error, a spread of exactly twice the error, are not flagged).
_ROUNDING = 1e-9

#: A row's timings are marked when another process kept more than this many cores' worth busy
#: during one of its runs (half a core: on two cores, a quarter of the machine).
OTHER_LOAD_LIMIT = 0.5
UNDER_LOAD = "†"

#: The frame's diagnostic columns and their dtypes (``rising_per_seed``: seed -> still rising;
#: ``other_load``: the most other processes used during one of the row's runs, in cores).
COLUMNS = {"still_improving": "boolean", "rising_per_seed": "object", "unstable": "boolean",
           "spread_ratio": "Float64", "other_load": "Float64", "timed_under_load": "boolean"}  # fmt: skip

LEGEND = (
    f"{STILL_IMPROVING} (a flag): most seeds (more than half of those judged) ended on their best "
    "validation score, better than every earlier point by more than "
    f"{RISE_STANDARD_ERRORS:g} standard error of the last point (the bootstrap over validation examples; "
    "for accuracy √(p(1−p)/n)): training longer would likely move the number; "
    f"{UNSTABLE} (a flag, with each seed's test score): the seeds' standard deviation is more than "
    f"{SPREAD_FACTOR:g}× the standard error the bootstrap over test examples gives one seed's score "
    "(for accuracy √(p(1−p)/n)): the seeds disagree by more than the test set can resolve, so the mean "
    "hides which result a run gets"
)

LOAD_LEGEND = (
    f"{UNDER_LOAD} after a timing: one of the row's runs was measured while other processes kept more "
    f"than {OTHER_LOAD_LIMIT:g} core's worth of CPU busy (other load, in its record): not comparable "
    "with timings on an otherwise idle machine"
)


def load_columns(other_load: list[float | None]) -> dict[str, Any]:
    """A row's load columns from its completed runs' ``other_cpu_share`` (``None``: not measured,
    records before 0.4): the most, and whether its timings are marked."""
    measured = [value for value in other_load if value is not None and not pd.isna(value)]
    most = max(measured) if measured else math.nan
    return {"other_load": most, "timed_under_load": most > OTHER_LOAD_LIMIT if measured else pd.NA}


def examples_behind(values: Iterable[float]) -> int | None:
    """The least number of examples ``n`` for which every value is ``k / n``; ``None`` where a
    value is not such a fraction (not an accuracy) or there are none."""
    examples, seen = 1, False
    for value in values:
        fraction = Fraction(value).limit_denominator(MAX_EXAMPLES)
        if not 0 <= value <= 1 or abs(float(fraction) - value) > _EXACT:
            return None
        examples, seen = math.lcm(examples, fraction.denominator), True
    return examples if seen else None


def still_rising(
    points: list[list[float]],
    final: float | None = None,
    standard_error: float | None = None,
    metric: str = RISING_METRIC,
    higher_is_better: bool = True,
) -> bool | None:
    """Whether one run's validation curve (``[[step, value], ...]``) ended clearly better than
    every earlier point, in the metric's direction; ``None`` (not judged) with fewer than two
    points, or where a last improvement cannot be weighed: no ``standard_error`` recorded for the
    last point and a metric other than accuracy (whose error is read from its value; ``final``,
    the run's recorded validation accuracy, helps tell how many examples it was measured on)."""
    values = [value for _, value in sorted(points)]
    if len(values) < 2 or any(value is None or math.isnan(value) for value in values):
        return None
    sign = 1.0 if higher_is_better else -1.0
    rise = sign * (values[-1] - (max(values[:-1]) if higher_is_better else min(values[:-1])))
    if standard_error is None or math.isnan(standard_error):
        examples = examples_behind([*values, *([] if final is None else [final])])
        if metric != RISING_METRIC or examples is None:
            return False if rise <= _ROUNDING else None
        standard_error = proportion_standard_error(values[-1], examples)
    return rise - RISE_STANDARD_ERRORS * standard_error > _ROUNDING


def spread_ratio(per_seed: list[float], outcomes: Outcomes | np.ndarray | None) -> float:
    """The seeds' standard deviation over the test set's bootstrap standard error (root mean square
    over the seeds); NaN with fewer than two seeds or no per-example test results. ``outcomes``:
    the row's test outcomes, or (seeds x examples) per-example correctness."""
    if outcomes is None or isinstance(outcomes, np.ndarray):
        outcomes = None if outcomes is None else Outcomes(outcomes)
    if len(per_seed) < 2 or outcomes is None or outcomes.seeds != len(per_seed):
        return math.nan
    spread = float(np.std(per_seed, ddof=1))
    noise = math.sqrt(float(np.mean(bootstrap_standard_error(outcomes) ** 2)))
    if noise == 0:
        return math.inf if spread > 0 else math.nan
    return spread / noise


def diagnose(
    curves: Mapping[int, tuple[Any, float | None, float | None]],
    per_seed: list[float],
    outcomes: Outcomes | np.ndarray | None,
    metric: str = RISING_METRIC,
    higher_is_better: bool = True,
) -> dict:
    """The diagnostic columns of one row scored by ``metric``: ``curves`` maps each completed seed
    to its validation curve, final validation score and the standard error of the curve's last
    point (``None`` where not recorded), ``per_seed`` holds their test scores and ``outcomes``
    their test outcomes (``stats.Outcomes``, or (seeds x examples) correctness; ``None`` if
    unknown)."""
    rising = {
        seed: verdict
        for seed, (points, final, error) in sorted(curves.items())
        if (verdict := still_rising(points or [], final, error, metric, higher_is_better)) is not None
    }
    ratio = spread_ratio(per_seed, outcomes)
    return {
        "still_improving": sum(rising.values()) > len(rising) / 2 if rising else pd.NA,
        "rising_per_seed": rising,
        "unstable": ratio - SPREAD_FACTOR > _ROUNDING if not math.isnan(ratio) else pd.NA,
        "spread_ratio": ratio,
    }


def flags_text(row: Any, metric: Metric) -> str:
    """The flags of one row of the leaderboard frame (scored by ``metric``), for people: ``still
    improving (2 of 3 seeds); unstable (86.05 / 74.60 / 75.05)``; empty where none."""
    flags = []
    if _flagged(row.still_improving):
        rising = row.rising_per_seed
        flags.append(f"{STILL_IMPROVING} ({sum(rising.values())} of {len(rising)} seeds)")
    if _flagged(row.unstable):
        values = " / ".join(metric.number(value) for _, value in sorted(row.score_per_seed.items()))
        flags.append(f"{UNSTABLE} ({values})")
    return "; ".join(flags)


def _flagged(value: Any) -> bool:
    return not pd.isna(value) and bool(value)


def details_text(row: Any, metric: Metric) -> str:
    """What the rules found for one row, flagged or not: each seed's verdict and the spread ratio."""
    parts = [flags_text(row, metric) or "no flags"]
    rising = row.rising_per_seed
    if rising:
        seeds = ", ".join(f"seed {seed} {'yes' if up else 'no'}" for seed, up in sorted(rising.items()))
        parts.append(f"validation still rising at the end: {seeds}")
    if not pd.isna(row.spread_ratio):
        parts.append(f"spread over seeds: {row.spread_ratio:.1f}× the test set's standard error")
    return "; ".join(parts)
