"""Adapters built on random or shared bases: VeRA, VB-LoRA (a vector bank shared by every layer)
and RandLoRA (full-rank updates from frozen random bases).

Learning rates: VB-LoRA follows peft's VB-LoRA sequence-classification example (RoBERTa on MRPC:
logits 1e-2, vector bank 1e-3, head 4e-3), through peftbench's parameter groups. RandLoRA: peft's
comparison trains it at its default 1e-4 on Llama-3.2-3B; peftbench uses ten times that, the factor
between its LoRA default on a classifier (1e-3) and the comparison's LoRA (1e-4).
"""

from __future__ import annotations

import peft
from pydantic import Field

from peftbench import PeftMethod, TrainingHyperparameters, learning_rate_field, parameter_groups
from peftbench.methods.base import has_conv1d_projections
from peftbench_peft_extras._common import (
    SEQ_CLS,
    TargetedHyperparameters,
    adapted_shapes,
    common_divisor,
    comparison_rate,
    head_scaled,
)

VBLORA_TARGETS = peft.utils.constants.TRANSFORMERS_MODELS_TO_VBLORA_TARGET_MODULES_MAPPING


class VeRA(PeftMethod):
    name = "vera"
    description = (
        "Shared frozen random low-rank matrices with trained scaling vectors (Kopiczko et al., 2024)."
    )
    size_key = "r"

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-2)
        r: int = Field(256, ge=1, description="rank of the shared frozen random matrices")

    def peft_config(self, model, task, **hp):
        return peft.VeraConfig(
            task_type=SEQ_CLS, r=hp["r"], fan_in_fan_out=has_conv1d_projections(model), save_projection=True
        )


class VbLora(PeftMethod):
    name = "vblora"
    description = (
        "Every adapter's low-rank factors mixed from one shared bank of vectors, top-k per slot "
        "(Li et al., 2024)."
    )
    search_space = {"learning_rate": [3e-3, 1e-2, 3e-2, 1e-1]}
    search_space_source = (
        "peft's VB-LoRA sequence-classification example (RoBERTa, MRPC): logits 1e-2, vector bank 1e-3, "
        "head 4e-3; a third of it to ten times it"
    )
    size_key = "num_vectors"

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = Field(
            1e-2, ge=1e-12, description="peak learning rate of AdamW, for the mixing logits"
        )
        vector_bank_lr_scale: float = Field(
            0.1,
            gt=0,
            description="the vector bank's learning rate over the logits' (peft's example: 1e-3 vs 1e-2)",
        )
        head_lr_scale: float = Field(
            0.4, gt=0, description="the classification head's learning rate over the logits' (example: 4e-3)"
        )
        r: int = Field(4, ge=1, description="rank of each adapter's factors")
        num_vectors: int = Field(256, ge=2, description="vectors in the shared bank")
        vector_length: int | None = Field(
            None, ge=1, description="length of each bank vector, dividing every adapted size (default: the "
            "largest such length up to 256)",
        )  # fmt: skip
        topk: int = Field(2, ge=1, description="bank vectors mixed into each slot of a factor")
        init_vector_bank_bound: float = Field(
            0.02, gt=0, description="the bank starts uniform in [-bound, bound]"
        )
        init_logits_std: float = Field(0.1, gt=0, description="the mixing logits start normal with this std")
        dropout: float = Field(0.0, ge=0.0, le=0.99, description="dropout on the adapter's input")

    def peft_config(self, model, task, **hp):
        shapes = adapted_shapes(model, hp["target_modules"], VBLORA_TARGETS)
        length = hp["vector_length"] or common_divisor([size for shape in shapes for size in shape], 256)
        return peft.VBLoRAConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            num_vectors=hp["num_vectors"],
            vector_length=length,
            topk=hp["topk"],
            init_vector_bank_bound=hp["init_vector_bank_bound"],
            init_logits_std=hp["init_logits_std"],
            vblora_dropout=hp["dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )

    def optimizer(self, model, hp):
        head = head_scaled(model, hp["head_lr_scale"])
        bank = hp["vector_bank_lr_scale"]
        return parameter_groups(model, hp, lambda name: bank if "vblora_vector_bank" in name else head(name))


class RandLora(PeftMethod):
    name = "randlora"
    description = (
        "Full-rank updates from frozen random low-rank bases with trained scalings (Albert et al., 2025)."
    )
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    search_space_source = comparison_rate("1e-4")
    size_key = (
        None  # its trainable count falls as r grows (fewer, larger bases): --budget needs one that grows
    )

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        r: int = Field(
            32, ge=1, description="rank of each random basis (fewer bases, fewer parameters as it grows)"
        )
        alpha_over_r: float = Field(
            20.0,
            gt=0,
            description="the update is scaled by alpha / r with alpha = alpha_over_r x r (peft: 20)",
        )
        dropout: float = Field(0.0, ge=0.0, le=0.99, description="dropout on the adapter's input")
        sparse: bool = Field(False, description="sparse random bases (a proof of concept in peft: no faster)")

    def peft_config(self, model, task, **hp):
        return peft.RandLoraConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            randlora_alpha=round(hp["alpha_over_r"] * hp["r"]),
            randlora_dropout=hp["dropout"],
            sparse=hp["sparse"],
            save_projection=True,  # the bases travel with the adapter: it reloads anywhere
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )


METHODS = (VeRA, VbLora, RandLora)
