"""Every kind of task known to this process, collected through ``register_tasks`` like methods.

The built-in kinds (``peftbench.tasks.classification``, ``peftbench.tasks.regression``) are
registered exactly as a plugin's entry point is; names are checked the same way (lower-case
identifiers, unique, a clash naming both sources), and so is what a kind declares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.tasks.base import Task
from peftbench.tasks.metrics import BUILTIN_METRICS, Metric

_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class RegisteredTask:
    task: Task
    source: str  # "built-in", or "<distribution> <version>" for an entry point


class TaskRegistry:
    """Every kind of task, by name, in registration order (built-ins first)."""

    def __init__(self, entries: dict[str, RegisteredTask]) -> None:
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[RegisteredTask]:
        return list(self._entries.values())

    def tasks(self) -> list[Task]:
        return [entry.task for entry in self._entries.values()]

    def get(self, name: str) -> Task:
        if name not in self._entries:
            known = ", ".join(self._entries)
            raise UnknownNameError(f"unknown task '{name}'; known tasks: {known}")
        return self._entries[name].task

    def detect(self, feature: Any, values: list[Any], inputs: int, column: str, dataset: str) -> Task:
        """The first kind (in registration order) that recognises the label column."""
        for task in self.tasks():
            if task.detects(feature, values, inputs):
                return task
        sample = ", ".join(repr(v) for v in values[:3])
        texts = "one text column" if inputs == 1 else f"{inputs} text columns"
        raise PeftbenchError(
            f"dataset '{dataset}': no kind of task reads label column '{column}' (values like {sample}) "
            f"with {texts}; name the kind with --task ({', '.join(self._entries)}) or check the columns"
        )


def collect_tasks(manager=None) -> TaskRegistry:
    """Call every plugin's ``register_tasks`` hook and validate what it registers."""
    from peftbench.plugins import collect_registrations

    found = collect_registrations(manager, "register_tasks", "task", Task, task_problem)
    return TaskRegistry({name: RegisteredTask(task, source) for name, (task, source) in found.items()})


def task_problem(task: Task) -> str | None:
    """What would make the harness fail on ``task`` mid-sweep, said now; ``None`` if nothing."""
    description = getattr(task, "description", None)
    if not isinstance(description, str) or not description.strip():
        return "it has no description: set description = 'one sentence on what is predicted'"
    inputs = getattr(task, "inputs", ())
    if not inputs or any(n not in (1, 2) for n in inputs):
        return f"its inputs {inputs!r} must be text-column counts among 1 and 2, e.g. (1,) or (1, 2)"
    metrics = getattr(task, "metrics", ())
    if not metrics or not all(isinstance(m, Metric) for m in metrics):
        return "its metrics must be a non-empty tuple of peftbench.tasks.Metric"
    names = [m.name for m in metrics]
    bad = next((n for n in names if not isinstance(n, str) or not _METRIC_NAME.match(n)), None)
    if bad is not None or len(set(names)) != len(names):
        return f"its metric names {names} must be distinct lower-case identifiers"
    clash = next(
        (m.name for m in metrics if m.name in BUILTIN_METRICS and m is not BUILTIN_METRICS[m.name]), None
    )
    if clash:
        return f"its metric '{clash}' is not the built-in metric of that name: use that one or another name"
    default = getattr(task, "default_metric", None)
    if default not in names:
        return f"its default_metric {default!r} is not one of its metrics ({', '.join(names)})"
    return None
