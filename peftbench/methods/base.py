"""The method interfaces every plugin implements, and the lifecycle the harness drives them through.

``Method`` is the low-level contract the harness talks to (its docstring lists every call, in
order); ``PeftMethod`` implements it for any method ``peft`` knows (write ``peft_config``);
``TrainableParametersMethod`` for any method that trains a subset of the model's own
parameters (write ``prepare``).
"""

from __future__ import annotations

import itertools
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import peft
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from peftbench.errors import PeftbenchError
from peftbench.methods import hyperparameters
from peftbench.methods.hyperparameters import Hyperparameters
from peftbench.methods.optim import ParameterGroup, parameter_groups
from peftbench.tasks.base import Task

# peft still calls a transformers property that warns on every call; it is not the user's to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

ROLES = ("method", "baseline", "reference")
#: What ``peftbench methods`` and a method's page say of a method that declares ``trains_on_features``.
FEATURES_FACT = "trains its head on the frozen model's features, computed once per sweep and dataset"


@dataclass(frozen=True)
class TrainingPlan:
    """How long a run's training will be, known before it starts (the same for every seed)."""

    total_steps: int  # optimiser steps the run takes
    steps_per_epoch: int
    epochs: float
    batch_size: int
    device: str  # where the model trains: "cpu", "cuda", "cuda:1"


@dataclass(frozen=True)
class TaskInfo:
    """What a method may know: the task (never anything from test) and the training ahead
    (``plan``; ``None`` where no training is planned)."""

    num_labels: int  # outputs of the head: one per class, one for a regression
    label_names: tuple[str, ...]  # class names, or the regression target's name
    train_label_counts: tuple[int, ...]  # per class, in the training split (empty for a regression)
    plan: TrainingPlan | None = None
    kind: str = "classification"  # the kind of task (``peftbench.tasks``): "regression", ...
    #: What a model that ignores its input predicts best on the training labels, as head outputs:
    #: the log of the class prior (its largest entry the majority class), or the training mean.
    constant_outputs: tuple[float, ...] = ()


class Method(ABC):
    """A fine-tuning method as the harness sees it. The calls it receives in one run, in order:

    1. **register**: the plugin's ``register_methods`` hook calls ``register(method)``; the
       registry checks the name, description, role, the signatures below and the
       hyper-parameter declaration, and refuses a method it could not run, naming the plugin.
    2. **validate**: ``hyperparameters(overrides)`` resolves and checks every value (and any rule
       between two of them, a ``model_validator`` on the ``Hyperparameters`` model) before any
       training.
    3. **prepare(model, task, hp)**: a fresh base model (fp32, on the CPU, classification head
       initialised from the seed, every parameter trainable as loaded) becomes the model to
       train; ``task.plan`` says how long training will be. Whatever is left trainable trains.
    4. **training**: the harness moves the model to the device, stores frozen weights in bf16
       where that precision is used (trainable ones stay fp32), asks ``optimizer(model, hp)``
       for the parameter groups (or the whole optimizer) and runs the loop;
       ``extra_loss(model)`` is added to every step's loss and ``after_step(model, step)`` runs
       after every optimiser step, where a method defines them; ``report(model)``, where defined,
       returns the method's own numbers about what it trained, kept in the record.
    5. **save(model, directory)**: write what was trained, safetensors only, into an empty folder.
    6. **load(base_model, directory, task, hp)**: rebuild the trained model from another fresh base
       model (same seed) and that folder.
    7. **reload check**: the harness evaluates the loaded model on test; its predictions must be
       identical to the trained model's, and the record says whether they were.
    8. **inference cost**: the harness times the loaded model (latency at batch 1, throughput at
       batch 64), then ``merge(model)``'s result where the method can merge (optional).
    """

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
    #: Values ``--tune`` tries first, chosen on validation; ``None``: the learning rate x {1/3, 1, 3}.
    #: Where the best is the smallest or largest value of a numeric key, the search goes on beyond it
    #: with the same spacing, within the key's declared search range (``search_range``).
    search_space: ClassVar[dict[str, list[Any]] | None] = None
    #: Where those values come from, in a sentence (a paper's settings, peft's comparison
    #: configurations), shown beside them by ``peftbench methods`` and on the method's page.
    search_space_source: ClassVar[str] = ""
    #: The whole-number hyper-parameter that scales the method's size (LoRA's ``r``), which
    #: ``--budget`` sets so that every method trains about as many parameters; ``None`` where the
    #: size is fixed (IA3's by the modules it rescales): under a budget such a method runs at its
    #: own size and its record says whether that is on budget.
    size_key: ClassVar[str | None] = None
    #: Methods that train nothing (the untuned baseline) take no training hyper-parameters.
    trains: ClassVar[bool] = True
    #: Trains only the classification head on top of the frozen model (a linear probe): ``prepare``
    #: leaves the body as loaded and nothing but ``classification_head(model)`` trainable. The
    #: harness then computes the frozen model's features once per sweep and dataset (eval mode:
    #: no dropout in the body) and trains the head on them instead of running the body at every
    #: step; evaluation, ``save``, ``load`` and the reload check use the full model as always.
    trains_on_features: ClassVar[bool] = False
    #: The model families this method cannot train, each with the reason in a sentence:
    #: ``{"gpt2": "peft's OFT has no layer for GPT-2's Conv1D projections"}``. Families are
    #: ``gpt2``, ``bert`` and ``llama`` (``peftbench.methods.support``); a sweep refuses such a
    #: pair in one line before anything trains. Empty (the default): every family.
    unsupported: ClassVar[dict[str, str]] = {}

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
        """The search space ``--tune`` explores; every combination is checked like overrides."""
        if not self.trains:
            return {}
        if self.search_space is None:
            rate = self.hyperparameters()["learning_rate"]
            return {"learning_rate": [rate / 3, rate, rate * 3]}
        grid = {key: list(values) for key, values in self.search_space.items()}
        for combination in itertools.product(*grid.values()):
            self.hyperparameters(dict(zip(grid, combination, strict=True)))
        return grid

    @abstractmethod
    def prepare(self, model: nn.Module, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        """Return the model to train, with exactly this method's parameters trainable.

        ``model`` is a fresh base model: fp32, on the CPU, its classification head initialised
        from the seed and every parameter trainable as loaded. Freeze what must not train; the
        head trains only if left trainable (peft's ``task_type=SEQ_CLS`` does that). Raise
        ``PeftbenchError`` with a sentence if the method cannot handle this model.
        """

    @abstractmethod
    def save(self, model: nn.Module, directory: Path) -> None:
        """Save what this method trained, the head included if it trained, into the empty folder
        ``directory`` (safetensors only: pickles are refused when the run reloads)."""

    @abstractmethod
    def load(self, base_model: nn.Module, directory: Path, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        """Rebuild the trained model from a fresh base model (same seed as training) and what
        ``save`` wrote; the harness moves it to the device and evaluates it."""

    def extra_loss(self, model: nn.Module) -> torch.Tensor:
        """A term added to every training step's loss, from the model being trained. Optional: the
        harness calls it only where a method defines it, so leaving it out costs nothing."""
        raise NotImplementedError

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimiser step, ``step`` counting from 1 to ``task.plan.total_steps``,
        before the gradients are cleared. Optional, like ``extra_loss``. A method that defines it
        may keep state of its own that no saved training state holds, so its runs are never
        continued from one (successive halving's survivors, final runs): they train from the start,
        to the same result."""
        raise NotImplementedError

    def optimizer(self, model: nn.Module, hp: dict[str, Any]) -> list[ParameterGroup] | torch.optim.Optimizer:
        """How the trainable parameters are optimised, asked once the model is on the device.

        Return parameter groups (``ParameterGroup``: parameters, a multiplier on the learning
        rate, a weight decay), which the harness makes into its AdamW and which must hold every
        trainable parameter exactly once; or a whole ``torch.optim.Optimizer`` over the model's
        parameters (each group's ``lr`` its peak rate). Either way the harness's warm-up and
        linear decay scale every group's rate alike and gradients are clipped before each step.
        Optional: by default ``parameter_groups(model, hp)``, AdamW at the learning rate with
        no weight decay on biases and normalisation weights.
        """
        return parameter_groups(model, hp)

    def report(self, model: nn.Module) -> dict[str, float]:
        """The method's own numbers about what it trained (AdaLoRA's final ranks, a regulariser's
        value), by name: called once after training, on the trained model on the device, before
        evaluation. They are kept in the record's ``method_metrics`` and shown, averaged over
        seeds, on the method's page. Optional, like ``extra_loss``."""
        raise NotImplementedError

    def merge(self, model: nn.Module) -> nn.Module | None:
        """The loaded model with what the method added folded into the base weights: a plain model
        that costs what the base model costs to run, for the merged inference figures. ``None``
        (the default) where the method cannot merge. Called on the loaded model, on the device,
        after the reload check; it may change ``model``, which is not used afterwards."""
        return None

    def applies_to(self, task: Task) -> bool:
        """Whether this method applies to a kind of task (``peftbench.tasks.Task``: its ``name``,
        whether it predicts ``classes``). A sweep leaves a reference row out where it does not
        apply and refuses, before any training, a method asked for by name. Default: every kind."""
        return True

    def defines(self, hook: str) -> bool:
        """Whether this method defines ``hook`` (``extra_loss``, ``after_step``, ``optimizer``,
        ``report``) itself."""
        return hook in vars(self) or getattr(type(self), hook) is not getattr(Method, hook)


def reported_metrics(method: Method, model: nn.Module) -> dict[str, float]:
    """What ``method.report(model)`` returns, checked: names to finite or NaN numbers (``{}`` where
    the method does not report); anything else is one sentence naming the method."""
    if not method.defines("report"):
        return {}
    numbers = method.report(model)
    if not isinstance(numbers, dict):
        raise PeftbenchError(f"method '{method.name}' reported {type(numbers).__name__}: return a dict")
    checked = {}
    for key, value in numbers.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PeftbenchError(f"method '{method.name}' reported {key!r}={value!r}: report numbers by name")
        checked[key] = float(value)
    return checked


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

    def merge(self, model: nn.Module) -> nn.Module | None:
        """peft folds weight adapters (LoRA, IA3, AdaLoRA, ...) into the base weights; prompt
        learning (prefix, prompt tuning) adds virtual tokens to every forward and cannot merge."""
        if model.active_peft_config.is_prompt_learning:
            return None
        return model.merge_and_unload()


class TrainableParametersMethod(Method):
    """A method that trains some of the model's own parameters: write ``prepare`` (make exactly
    those trainable, the head too if it should train) and the rest is done. ``save`` writes
    exactly the trainable parameters (safetensors); ``load`` puts them back into a fresh base
    model and calls ``prepare`` on it again."""

    WEIGHTS = "trained.safetensors"

    def save(self, model: nn.Module, directory: Path) -> None:
        state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(directory / self.WEIGHTS))

    def load(self, base_model: nn.Module, directory: Path, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        state = load_file(str(directory / self.WEIGHTS))
        unexpected = sorted(set(state) - {name for name, _ in base_model.named_parameters()})
        if unexpected:
            raise PeftbenchError(
                f"weights in {directory} do not fit this model (unknown: {', '.join(unexpected[:3])})"
            )
        base_model.load_state_dict(state, strict=False)
        return self.prepare(base_model, task, hp)


def has_conv1d_projections(model: nn.Module) -> bool:
    """GPT-2-style models store projections transposed (``Conv1D``): LoRA/IA3 need ``fan_in_fan_out``."""
    return any(isinstance(module, Conv1D) for module in model.modules())
