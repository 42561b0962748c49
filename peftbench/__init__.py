"""peftbench: which parameter-efficient fine-tuning method should I use, and what does it cost?

The public API: ``run`` a sweep, read a ``Leaderboard``, and write plugins: methods with
``hookimpl``, ``Method``, ``PeftMethod``, ``TrainingHyperparameters`` and ``ParameterGroup``;
kinds of task with ``Task`` and ``Metric``.

Names are imported on first use, so ``import peftbench`` (and ``peftbench --help``, ``peftbench
leaderboard``) does not load torch, transformers, peft or datasets until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from peftbench.version import __version__  # noqa: F401  (peftbench.__version__)

#: Every public name and the module it comes from.
_WHERE = {
    "Hyperparameters": "peftbench.methods.hyperparameters",
    "Leaderboard": "peftbench.leaderboard",
    "Method": "peftbench.methods.base",
    "Metric": "peftbench.tasks.metrics",
    "ModuleNames": "peftbench.methods.hyperparameters",
    "ParameterGroup": "peftbench.methods.optim",
    "PeftMethod": "peftbench.methods.base",
    "PeftbenchError": "peftbench.errors",
    "RunRecord": "peftbench.records",
    "SweepConfig": "peftbench.settings",
    "Task": "peftbench.tasks.base",
    "TaskInfo": "peftbench.methods.base",
    "TrainConfig": "peftbench.settings",
    "TrainableParametersMethod": "peftbench.methods.base",
    "TrainingPlan": "peftbench.methods.base",
    "TrainingHyperparameters": "peftbench.methods.hyperparameters",
    "UnknownNameError": "peftbench.errors",
    "classification_head": "peftbench.models",
    "collect_methods": "peftbench.plugins",
    "collect_tasks": "peftbench.tasks.registry",
    "hookimpl": "peftbench.hookspecs",
    "learning_rate_field": "peftbench.methods.hyperparameters",
    "parameter_groups": "peftbench.methods.optim",
    "read_records": "peftbench.records",
    "run": "peftbench.api",
    "search_range": "peftbench.methods.hyperparameters",
    "transformer_blocks": "peftbench.models",
}
__all__ = [
    "Hyperparameters",
    "Leaderboard",
    "Method",
    "Metric",
    "ModuleNames",
    "ParameterGroup",
    "PeftMethod",
    "PeftbenchError",
    "RunRecord",
    "SweepConfig",
    "Task",
    "TaskInfo",
    "TrainConfig",
    "TrainableParametersMethod",
    "TrainingHyperparameters",
    "TrainingPlan",
    "UnknownNameError",
    "classification_head",
    "collect_methods",
    "collect_tasks",
    "hookimpl",
    "learning_rate_field",
    "parameter_groups",
    "read_records",
    "run",
    "search_range",
    "transformer_blocks",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'peftbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


if TYPE_CHECKING:  # what editors and type checkers see
    from peftbench.api import run
    from peftbench.errors import PeftbenchError, UnknownNameError
    from peftbench.hookspecs import hookimpl
    from peftbench.leaderboard import Leaderboard
    from peftbench.methods.base import Method, PeftMethod, TaskInfo, TrainableParametersMethod, TrainingPlan
    from peftbench.methods.hyperparameters import (
        Hyperparameters,
        ModuleNames,
        TrainingHyperparameters,
        learning_rate_field,
        search_range,
    )
    from peftbench.methods.optim import ParameterGroup, parameter_groups
    from peftbench.models import classification_head, transformer_blocks
    from peftbench.plugins import collect_methods
    from peftbench.records import RunRecord, read_records
    from peftbench.settings import SweepConfig, TrainConfig
    from peftbench.tasks.base import Task
    from peftbench.tasks.metrics import Metric
    from peftbench.tasks.registry import collect_tasks
