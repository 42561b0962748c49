"""What a sweep will run: the methods asked for (and the reference rows), each with its
hyper-parameters resolved and checked, every tuning candidate included, before anything loads or
trains; and, once the datasets are loaded, a refusal of a method asked for by name that does not
apply to a dataset's kind of task."""

from __future__ import annotations

from typing import Any

from peftbench.errors import PeftbenchError
from peftbench.plugins import MethodRegistry, RegisteredMethod
from peftbench.runs.search.base import combinations, search_space
from peftbench.runs.sizing import refuse_conflicts
from peftbench.settings import SweepConfig
from peftbench.tasks.base import Task

Plan = list[tuple[RegisteredMethod, dict[str, Any]]]


def plan_runs(config: SweepConfig, registry: MethodRegistry) -> Plan:
    """The (method, resolved hyper-parameters) pairs of the sweep; raises on any bad input."""
    entries = [registry.get(name) for name in config.methods]
    if config.references:
        asked = set(config.methods)
        always = [e for e in registry.entries() if e.method.always_run and e.method.name not in asked]
        entries = always + entries
    for method in config.hp:
        if method not in {e.method.name for e in entries}:
            registry.get(method)  # unknown names get the list of known ones
            raise PeftbenchError(f"hyper-parameters given for '{method}', which is not in --methods")
    refuse_conflicts(config.budget, entries, config.hp)
    plan = [(e, e.method.hyperparameters(config.hp.get(e.method.name))) for e in entries]
    for entry, _ in plan if config.tune else ():  # every candidate checked now, rules between keys too
        overrides = config.hp.get(entry.method.name, {})
        for values in combinations(search_space(entry.method, overrides)):
            entry.method.hyperparameters({**overrides, **values})
    return plan


def refuse_inapplicable(plan: Plan, asked: tuple[str, ...], task: Task, dataset: str) -> None:
    """A method asked for by name that does not apply to a dataset's kind of task is one line
    before any training (a reference row that does not apply is simply left out there)."""
    for entry, _ in plan:
        if entry.method.name in asked and not entry.method.applies_to(task):
            raise PeftbenchError(
                f"method '{entry.method.name}' does not apply to {task.name} (dataset '{dataset}'); "
                "leave it out of --methods for this dataset"
            )
