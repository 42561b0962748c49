"""Reference rows every leaderboard is read against: a constant prediction (the majority class;
for a regression, the training mean), untuned model, linear probe, and (opt-in, being the
expensive one) full fine-tuning.

They are ordinary methods registered through the public hook; ``always_run`` makes every sweep
run the cheap ones beside the methods asked for, so each table carries its own floor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from peftbench.hookspecs import hookimpl
from peftbench.methods.base import Method, TaskInfo, TrainableParametersMethod
from peftbench.models import classification_head
from peftbench.tasks.base import Task


class UntunedBaseline(Method):
    name = "baseline"
    description = "The base model with its freshly initialised classification head, not trained at all."
    role = "baseline"
    always_run = True
    trains = False

    def prepare(self, model: nn.Module, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        model.requires_grad_(False)
        return model

    def save(self, model: nn.Module, directory: Path) -> None:
        """Nothing was trained; the head is reproduced by loading the base model with the same seed."""

    def load(self, base_model, directory: Path, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        return self.prepare(base_model, task, hp)


class ConstantPredictor(nn.Module):
    """Outputs the same values for every input: what the task's constant reference predicts."""

    def __init__(self, outputs: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("log_prior", outputs)  # the name records' adapters have always used

    def forward(self, input_ids: torch.Tensor, **_: Any) -> SequenceClassifierOutput:
        logits = self.log_prior.expand(input_ids.shape[0], -1)
        return SequenceClassifierOutput(logits=logits)


MajorityClassifier = ConstantPredictor  # the name it had before regression came


class _Constant(Method):
    """A reference row that ignores its input: it outputs the task's ``constant_outputs``."""

    role = "reference"
    always_run = True
    trains = False
    WEIGHTS = "prior.safetensors"

    def prepare(self, model: nn.Module, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        return ConstantPredictor(torch.tensor(task.constant_outputs, dtype=torch.float32))

    def save(self, model: nn.Module, directory: Path) -> None:
        save_file({"log_prior": model.log_prior.contiguous()}, str(directory / self.WEIGHTS))

    def load(self, base_model, directory: Path, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        return ConstantPredictor(load_file(str(directory / self.WEIGHTS))["log_prior"])


class MajorityClass(_Constant):
    name = "majority"
    description = "Always predicts the most frequent training label (logits are the training prior)."

    def applies_to(self, task: Task) -> bool:
        return task.classes


class TrainingMean(_Constant):
    name = "train_mean"
    description = "Always predicts the mean of the training labels: the regression counterpart of majority."

    def applies_to(self, task: Task) -> bool:
        return not task.classes


class HeadOnly(TrainableParametersMethod):
    name = "head_only"
    description = "Linear probe: only the classification head trains; the base model stays frozen."
    role = "reference"
    always_run = True
    trains_on_features = True  # the frozen body's features are computed once, not at every step
    defaults = {"learning_rate": 3e-3}
    search_space = {"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2]}

    def prepare(self, model: nn.Module, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        model.requires_grad_(False)
        classification_head(model).requires_grad_(True)
        return model


class FullFineTuning(TrainableParametersMethod):
    name = "full_finetune"
    description = "Every weight trains: the expensive upper reference PEFT methods are read against."
    role = "reference"
    defaults = {"learning_rate": 5e-5, "weight_decay": 0.01}
    search_space = {"learning_rate": [2e-5, 5e-5, 1e-4, 2e-4]}

    def prepare(self, model: nn.Module, task: TaskInfo, hp: dict[str, Any]) -> nn.Module:
        model.requires_grad_(True)
        return model


@hookimpl
def register_methods(register):
    register(UntunedBaseline())
    register(MajorityClass())
    register(TrainingMean())
    register(HeadOnly())
    register(FullFineTuning())
