"""peftbench: which parameter-efficient fine-tuning method should I use, and what does it cost?

The public API: ``run`` a sweep, read a ``Leaderboard``, and write method plugins with
``hookimpl``, ``Method``, ``PeftMethod``, ``TrainingHyperparameters`` and ``ParameterGroup``.
"""

from __future__ import annotations

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
from peftbench.version import __version__  # noqa: F401  (peftbench.__version__)

__all__ = [
    "Hyperparameters",
    "Leaderboard",
    "Method",
    "ModuleNames",
    "ParameterGroup",
    "PeftMethod",
    "PeftbenchError",
    "RunRecord",
    "SweepConfig",
    "TaskInfo",
    "TrainConfig",
    "TrainableParametersMethod",
    "TrainingPlan",
    "TrainingHyperparameters",
    "UnknownNameError",
    "classification_head",
    "collect_methods",
    "hookimpl",
    "learning_rate_field",
    "parameter_groups",
    "read_records",
    "run",
    "search_range",
    "transformer_blocks",
]
