"""The method interfaces every plugin implements.

``Method`` is the low-level contract the harness talks to: make the right parameters trainable,
save what was trained, load it back onto a fresh base model. ``PeftMethod`` implements all of it
for any method that ``peft`` already knows, so such a method only writes its ``peft_config``.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import peft
from torch import nn
from transformers.pytorch_utils import Conv1D

from peftbench.errors import PeftbenchError

# peft still calls a transformers property that warns on every call; it is not the user's to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

#: Training hyper-parameters every method has; a method's own ``defaults`` override them.
TRAINING_DEFAULTS: dict[str, Any] = {"learning_rate": 5e-4, "weight_decay": 0.0, "warmup_ratio": 0.06}
TRAINING_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "learning_rate": (1e-12, None),
    "weight_decay": (0.0, None),
    "warmup_ratio": (0.0, 1.0),
}


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
    #: Method hyper-parameters and their defaults; the type of each default is the accepted type.
    #: A ``None`` default accepts any value, except for a ``*_modules`` key, which takes module
    #: names (``--hp lora.target_modules=query,value``) and always holds a list of str or ``None``.
    defaults: ClassVar[dict[str, Any]] = {}
    #: Inclusive (low, high) bounds for numeric hyper-parameters; ``None`` leaves a side open.
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

    def hyperparameters(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merge ``overrides`` into the defaults, rejecting unknown keys, wrong types and bad values."""
        merged = {**(TRAINING_DEFAULTS if self.trains else {}), **self.defaults}
        bounds = {**TRAINING_BOUNDS, **self.bounds}
        for key, value in (overrides or {}).items():
            if key not in merged:
                known = ", ".join(sorted(merged))
                raise PeftbenchError(f"method '{self.name}' has no hyper-parameter '{key}'; known: {known}")
            merged[key] = _coerce(self.name, key, value, merged[key])
        for key, value in merged.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise PeftbenchError(
                    f"method '{self.name}': hyper-parameter '{key}'={value} must be a finite number"
                )
        for key, (low, high) in bounds.items():
            value = merged.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
                raise PeftbenchError(
                    f"method '{self.name}': hyper-parameter '{key}'={value} is out of range {span}"
                )
        return merged

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


def is_name_list(key: str, default: Any) -> bool:
    """Whether ``key`` holds module names: a ``*_modules`` key whose default is ``None``."""
    return default is None and key.endswith("_modules")


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    """Turn an override (possibly a CLI string) into the default's type, or explain why not.

    A key whose default is ``None`` takes any value, except a ``*_modules`` key (peft's
    ``target_modules``, ``feedforward_modules``, ...): it takes ``null``, a list of names or a
    comma-separated string (``query,value``), always stored as a list of names. peft would read
    a plain string as a regular expression, so ``--hp lora.target_modules=query,value`` would
    otherwise match nothing and fail every run late.
    """
    if is_name_list(key, default):
        return _name_list(method, key, value)
    if isinstance(value, str) and not isinstance(default, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            if isinstance(default, bool) and value.lower() in {"true", "false"}:
                value = value.lower() == "true"
            elif isinstance(default, float):  # "inf", "nan": refused as not finite, not as not float
                with contextlib.suppress(ValueError):
                    value = float(value)
    if default is None:
        return value
    expected = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)) and isinstance(value, str):
        value, ok = [part.strip() for part in value.split(",") if part.strip()], True
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise PeftbenchError(
            f"method '{method}': hyper-parameter '{key}' must be {expected.__name__}, got {value!r}"
        )
    return value


def _name_list(method: str, key: str, value: Any) -> list[str] | None:
    """``None``, a list of names, a JSON list or ``"query,value"`` -> ``None`` or a list of names."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") or text == "null":
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text  # refused below, with the accepted forms
        elif text:
            value = [part.strip() for part in text.split(",")]
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) and name.strip() for name in value):
        return [name.strip() for name in value]
    raise PeftbenchError(
        f"method '{method}': hyper-parameter '{key}' must be module names, e.g. query,value or "
        f'["query", "value"], got {value!r}'
    )
