"""Adapters that train a few entries of a transform of each weight update, or of the update itself:
FourierFT (spectral coefficients), C3A (circular-convolution kernels) and SHiRA (a sparse set of
the weight's own entries).

Learning rates: FourierFT and C3A follow peft's sequence-classification examples (RoBERTa on MRPC),
which train the adapter far faster than the head, through peftbench's parameter groups: FourierFT
6e-2 with the head at 6e-3 (the authors' GLUE scripts: 5e-2 to 1.2e-1, head 1e-3 to 1.1e-2); C3A
3e-1 ("at least 1e-1", peft's C3A docs). That example trains C3A's head at 4e-6 over five epochs;
with one epoch and a freshly initialised head peftbench gives it 3e-3 (head_lr_scale 0.01), the
head rate of the other examples. SHiRA: peft's comparison trains it at 3e-4 on Llama-3.2-3B;
peftbench uses ten times that, the factor between its LoRA default on a classifier (1e-3) and the
comparison's LoRA (1e-4).
"""

from __future__ import annotations

import peft
from pydantic import Field

from peftbench import PeftMethod, learning_rate_field, parameter_groups
from peftbench.methods.base import has_conv1d_projections
from peftbench_peft_extras._common import (
    SEQ_CLS,
    TargetedHyperparameters,
    adapted_shapes,
    common_divisor,
    comparison_rate,
    conv1d_reason,
    head_scaled,
)

C3A_TARGETS = peft.utils.constants.TRANSFORMERS_MODELS_TO_C3A_TARGET_MODULES_MAPPING


class FourierFT(PeftMethod):
    name = "fourierft"
    description = (
        "Trains n random spectral coefficients of each weight update, inverse-DFT'd (Gao et al., 2024)."
    )
    search_space = {"learning_rate": [2e-2, 6e-2, 1e-1, 2e-1]}
    search_space_source = (
        "peft's FourierFT sequence-classification example (RoBERTa, MRPC: 6e-2, head 6e-3); the authors' "
        "GLUE scripts use 5e-2 to 1.2e-1"
    )
    size_key = "n_frequency"

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = Field(
            6e-2, ge=1e-12, description="peak learning rate of AdamW, for the spectral coefficients"
        )
        head_lr_scale: float = Field(
            0.1,
            gt=0,
            description="the classification head's learning rate over the coefficients' (example: 0.1)",
        )
        n_frequency: int = Field(1000, ge=1, description="trained spectral coefficients per adapted weight")
        scaling: float = Field(
            150.0, gt=0, description="the update is multiplied by this (like lora_alpha; the paper: 150 for "
            "RoBERTa, 300 for Llama)",
        )  # fmt: skip
        random_loc_seed: int = Field(777, ge=0, description="seed of the coefficients' random positions")

    def peft_config(self, model, task, **hp):
        return peft.FourierFTConfig(
            task_type=SEQ_CLS,
            n_frequency=hp["n_frequency"],
            scaling=hp["scaling"],
            random_loc_seed=hp["random_loc_seed"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )

    def optimizer(self, model, hp):
        return parameter_groups(model, hp, head_scaled(model, hp["head_lr_scale"]))


class C3A(PeftMethod):
    name = "c3a"
    description = (
        "Weight updates as block-circulant matrices: trained circular-convolution kernels "
        "(Chen et al., 2024)."
    )
    search_space = {"learning_rate": [1e-1, 3e-1, 1.0]}
    search_space_source = (
        "peft's C3A sequence-classification example and comparison (3e-1) and docs (at least 1e-1)"
    )
    size_key = None  # parameters fall as block_size grows: --budget needs a key they grow with
    unsupported = {"gpt2": conv1d_reason("C3A")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = Field(
            3e-1, ge=1e-12, description="peak learning rate of AdamW, for the kernels"
        )
        head_lr_scale: float = Field(
            0.01, gt=0, description="the classification head's learning rate over the kernels'"
        )
        weight_decay: float = Field(0.0, ge=0.0, description="AdamW's decoupled weight decay (keep it tiny)")
        block_size: int | None = Field(
            None,
            ge=1,
            description="kernel length, dividing every adapted size; fewer parameters as it grows "
            "(default: the largest, as peft's example)",
        )

    def peft_config(self, model, task, **hp):
        shapes = adapted_shapes(model, hp["target_modules"], C3A_TARGETS)
        size = hp["block_size"] or common_divisor([size for shape in shapes for size in shape])
        return peft.C3AConfig(task_type=SEQ_CLS, block_size=size, target_modules=hp["target_modules"])

    def optimizer(self, model, hp):
        return parameter_groups(model, hp, head_scaled(model, hp["head_lr_scale"]))


class Shira(PeftMethod):
    name = "shira"
    description = (
        "Trains a random sparse set of each weight's own entries, as many as LoRA's (Bhardwaj et al., 2024)."
    )
    search_space = {"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2]}
    search_space_source = comparison_rate("3e-4")
    size_key = "r"
    unsupported = {"gpt2": conv1d_reason("SHiRA")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(3e-3)
        r: int = Field(
            8,
            ge=1,
            description="trains r x (rows + columns) entries of each weight, as many as a rank-r LoRA",
        )

    def peft_config(self, model, task, **hp):
        # The mask is drawn from the global generator, which the harness seeds with the run's seed.
        return peft.ShiraConfig(task_type=SEQ_CLS, r=hp["r"], target_modules=hp["target_modules"])


METHODS = (FourierFT, C3A, Shira)
