"""The method interfaces every plugin implements.

``Method`` is the low-level contract the harness talks to: make the right parameters trainable,
save what was trained, load it back onto a fresh base model. ``PeftMethod`` implements all of it
for any method that ``peft`` already knows, so such a method only writes its ``peft_config``.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import peft
from torch import nn
from transformers.pytorch_utils import Conv1D

from peftbench.methods import hyperparameters
from peftbench.methods.hyperparameters import Hyperparameters

# peft still calls a transformers property that warns on every call; it is not the user's to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


@dataclass(frozen=True)
class TaskInfo:
    """What a method may know about the classification task (never anything from test)."""

    num_labels: int
    label_names: tuple[str, ...]
    train_label_counts: tuple[int, ...]


class Method(ABC):
    """A fine-tuning method as the harness sees it."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: The method's hyper-parameters: a ``TrainingHyperparameters`` subclass declaring each one
    #: with its type, default, bounds and help (see ``peftbench.methods.hyperparameters``).
    Hyperparameters: ClassVar[type[Hyperparameters] | None] = None
    #: The short form instead of ``Hyperparameters``: defaults whose types are the accepted
    #: types, and inclusive ``(low, high)`` bounds, ``None`` for an open side.
    defaults: ClassVar[dict[str, Any]] = {}
    bounds: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    #: "method", or a reference row run in every sweep beside the methods asked for: "baseline" (the
    #: untuned model, which the leaderboard's deltas are measured against) or "reference".
    role: ClassVar[str] = "method"
    #: Run in every sweep (unless references are switched off), like the baseline.
    always_run: ClassVar[bool] = False
    #: Values ``--tune`` tries, chosen on validation; ``None``: the learning rate x {1/3, 1, 3}.
    search_space: ClassVar[dict[str, list[Any]] | None] = None
    #: Methods that train nothing (the untuned baseline) take no training hyper-parameters.
    trains: ClassVar[bool] = True

    _models: ClassVar[dict[type, type[Hyperparameters]]] = {}

    @classmethod
    def hyperparameter_model(cls) -> type[Hyperparameters]:
        """The pydantic model of this method's hyper-parameters (built once from ``defaults`` and
        ``bounds`` where the method declares those instead of ``Hyperparameters``)."""
        if cls not in Method._models:
            declared = cls.Hyperparameters
            if declared is None:
                declared = hyperparameters.from_defaults(cls.name, cls.defaults, cls.bounds, cls.trains)
            Method._models[cls] = declared
        return Method._models[cls]

    def hyperparameters(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The defaults with ``overrides`` applied, refusing unknown keys, wrong types and bad values."""
        return hyperparameters.resolve(self.name, self.hyperparameter_model(), overrides)

    def tuning_grid(self) -> dict[str, list[Any]]:
        """The search space ``--tune`` explores (every combination), validated like overrides."""
        if not self.trains:
            return {}
        if self.search_space is None:
            rate = self.hyperparameters()["learning_rate"]
            return {"learning_rate": [rate / 3, rate, rate * 3]}
        for key, values in self.search_space.items():
            for value in values:
                self.hyperparameters({key: value})
        return {key: list(values) for key, values in self.search_space.items()}

    @abstractmethod
    def prepare(self, model: nn.Module, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        """Return the model to train, with exactly this method's parameters trainable."""

    @abstractmethod
    def save(self, model: nn.Module, directory: Path) -> None:
        """Save what this method trained (safetensors only) into ``directory``."""

    @abstractmethod
    def load(self, base_model: nn.Module, directory: Path, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        """Rebuild the trained model from a freshly loaded base model and ``directory``."""


class PeftMethod(Method):
    """A method backed by ``peft``: write ``peft_config`` and the rest is done."""

    @abstractmethod
    def peft_config(self, model: nn.Module, task: TaskInfo, **hp: Any) -> peft.PeftConfig:
        """The peft configuration for ``model``; ``hp`` holds every resolved hyper-parameter."""

    def prepare(self, model: nn.Module, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        return peft.get_peft_model(model, self.peft_config(model, task, **hp))

    def save(self, model: nn.Module, directory: Path) -> None:
        model.save_pretrained(str(directory), safe_serialization=True)

    def load(self, base_model: nn.Module, directory: Path, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        return peft.PeftModel.from_pretrained(base_model, str(directory))


def has_conv1d_projections(model: nn.Module) -> bool:
    """GPT-2-style models store projections transposed (``Conv1D``): LoRA/IA3 need ``fan_in_fan_out``."""
    return any(isinstance(module, Conv1D) for module in model.modules())
