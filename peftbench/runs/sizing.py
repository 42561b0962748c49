"""Each method of a sweep sized to ``--budget``: once per method, before anything trains, on the CPU.

A method is sized by its ``size_key`` on its real count of trainable parameters: the method
prepares a copy of the sweep's base model at a candidate value and the parameters left trainable
are counted, exactly as a run's record counts them (``peftbench.budget.fit`` picks the values).
Reference rows are not sized. A method that cannot be sized to the budget (no size key, or its
nearest size is off by more than the tolerance) still runs, at its own or nearest size, and its
records say so.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from peftbench.budget import Budget, fit, within
from peftbench.errors import PeftbenchError
from peftbench.methods.base import Method, TaskInfo
from peftbench.plugins import RegisteredMethod
from peftbench.runs.context import SweepContext
from peftbench.validation import field_bounds


def refuse_conflicts(budget: Budget | None, entries: list[RegisteredMethod], hp: dict[str, dict]) -> None:
    """A size key given with ``--hp`` and ``--budget`` asks for two sizes: refuse before any work."""
    for entry in entries if budget is not None else ():
        name, key = entry.method.name, entry.method.size_key
        if entry.method.role == "method" and key is not None and key in hp.get(name, {}):
            raise PeftbenchError(
                f"--budget sizes {name} by {key}, and --hp {name}.{key} fixes it too: drop one of them"
            )


def size_methods(
    ctx: SweepContext,
    plan: list[tuple[RegisteredMethod, dict[str, Any]]],
    budget: Budget,
    hp: dict[str, dict],
) -> tuple[int, dict[str, dict[str, Any]]]:
    """The base model's parameter count, and per sized method what its records store as ``budget``:
    ``{"asked", "target", "key", "value", "achieved", "within"}`` (plus ``"error"`` if sizing broke)."""
    base = ctx.fresh_model(0)
    total = sum(p.numel() for p in base.parameters())
    target = budget.target(total)
    sized = {}
    for entry, resolved in plan:
        if entry.method.role == "method":
            found = size_method(entry.method, resolved, hp.get(entry.method.name, {}), base, ctx.task, target)
            sized[entry.method.name] = {"asked": str(budget), **found}
    return total, sized


def size_method(
    method: Method,
    resolved: dict[str, Any],
    overrides: dict[str, Any],
    base: torch.nn.Module,
    task: TaskInfo,
    target: int,
) -> dict[str, Any]:
    """Size one method to ``target`` trainable parameters; never raises (a method that cannot even be
    prepared here fails the same way in its runs, which record why)."""
    key = method.size_key

    def count(hp: dict[str, Any]) -> int:
        with torch.random.fork_rng(devices=[]):  # sizing must not move the runs' random streams
            torch.manual_seed(0)
            model = method.prepare(_copy(base), task, hp)
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def count_at(value: int) -> int | None:
        try:
            return count(method.hyperparameters({**overrides, key: value}))
        except PeftbenchError:  # a rule between hyper-parameters, or the method, refuses this size
            return None

    result: dict[str, Any] = {"target": target, "key": key, "value": None, "achieved": None}
    try:
        own = count(resolved)  # the method's own size: if this fails, its runs fail and say why
        if key is None:
            result["achieved"] = own
        else:
            low, high = _bounds(method, key)
            found = fit(
                lambda v: own if v == resolved[key] else count_at(v), target, resolved[key], low, high
            )
            result.update(value=found.value, achieved=found.achieved)
    except Exception as error:  # noqa: BLE001 - reported in the records, the runs go on
        result["error"] = f"{type(error).__name__}: {error}"
    return {**result, "within": within(result["achieved"], target)}


def _copy(base: torch.nn.Module) -> torch.nn.Module:
    """A fresh copy of ``base`` for one count: new parameters (each with its own ``requires_grad``)
    over the same weights, twenty times faster than copying them. The count does not depend on
    the values, and the base is only ever used for sizing."""
    shared = {id(p): torch.nn.Parameter(p.data, requires_grad=p.requires_grad) for p in base.parameters()}
    return copy.deepcopy(base, shared)


def _bounds(method: Method, key: str) -> tuple[int, float]:
    """The whole numbers ``key`` may take, from its declared bounds (at least 1)."""
    bounds = field_bounds(method.hyperparameter_model().model_fields[key])
    low = max(1, math.ceil(bounds.get("ge", bounds.get("gt", 0) + 1)))
    high = bounds.get("le", bounds.get("lt", math.inf) - 1)
    return low, math.floor(high) if math.isfinite(high) else math.inf


def budget_line(name: str, budget: dict[str, Any]) -> str:
    """What the sweep prints for one method: its size, and whether that is on budget."""
    achieved = "?" if budget["achieved"] is None else f"{budget['achieved']:,}"
    size = f"{budget['key']}={budget['value']}, " if budget["value"] is not None else ""
    text = f"  {name}: {size}{achieved} trainable parameters"
    if budget["within"]:
        return text
    if "error" in budget:
        why = f"could not be sized ({budget['error']})"
    elif budget["key"] is None:
        why = "no size key, runs at its own size"
    else:
        why = f"the nearest {budget['key']} it allows"
    return f"{text}: OFF BUDGET ({why}; target {budget['target']:,})"
