"""Relatives of LoRA from peft with their own parametrisation of the update: DeLoRA (bounded norm),
GraLoRA (a grid of small LoRAs), HiRA (Hadamard product with the weight) and MiSS (shards of one
shared matrix). Each is sized like LoRA at r=8 by default (about as many trainable parameters).

Learning rates: peft's comparison (Llama-3.2-3B on MetaMathQA) trains DeLoRA at 1e-3 (peft's
DeLoRA docs: "10-100x larger than for standard LoRA variants"), GraLoRA at 2e-4, HiRA at 4.5e-3
and MiSS at its default 1e-4. peftbench's defaults are ten times those, the factor between its
LoRA default on a classifier (1e-3) and the comparison's LoRA (1e-4); ``--tune`` tries a third
of it to ten times it.
"""

from __future__ import annotations

import peft
from pydantic import Field, model_validator

from peftbench import PeftMethod, learning_rate_field
from peftbench.methods.base import has_conv1d_projections
from peftbench_peft_extras._common import SEQ_CLS, TargetedHyperparameters, comparison_rate, conv1d_reason


class Delora(PeftMethod):
    name = "delora"
    description = "LoRA with normalised factors and a learned bound on the update's norm (Bini et al., 2025)."
    search_space = {"learning_rate": [1e-3, 3e-3, 1e-2, 3e-2]}
    search_space_source = (
        "peft's comparison trains it at 1e-3 (Llama-3.2-3B, MetaMathQA) and its DeLoRA docs advise 10-100x "
        "LoRA's rate, but on MiniLM x rotten_tomatoes 1e-2 stayed at chance where 1e-3 reached 81.6% "
        "(one seed, one epoch): from 1e-3 to 3e-2, with the default at 1e-3"
    )
    size_key = "r"
    unsupported = {"gpt2": conv1d_reason("DeLoRA")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        r: int = Field(8, ge=1, description="rank of the low-rank update")
        delora_lambda: float = Field(
            15.0, gt=0, description="initial bound on the update's Frobenius norm (trained from there)"
        )
        module_dropout: float = Field(
            0.0, ge=0.0, lt=1.0, description="chance of switching an adapter off in a training step"
        )

    def peft_config(self, model, task, **hp):
        return peft.DeloraConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            delora_lambda=hp["delora_lambda"],
            module_dropout=hp["module_dropout"],
            target_modules=hp["target_modules"],
        )


class Gralora(PeftMethod):
    name = "gralora"
    description = "Granular LoRA: a k x k grid of small LoRAs over blocks of each weight (Jung et al., 2025)."
    search_space = {"learning_rate": [7e-4, 2e-3, 6e-3, 2e-2]}
    search_space_source = comparison_rate("2e-4")
    size_key = "r"

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(2e-3)
        r: int = Field(
            8, ge=1, description="total rank, split among the k blocks (as many parameters as LoRA's r)"
        )
        alpha: int = Field(16, ge=1, description="the update is scaled by alpha / (r + hybrid_r)")
        gralora_k: int = Field(2, ge=1, description="blocks per side of the grid; must divide r")
        hybrid_r: int = Field(0, ge=0, description="extra rank given to one plain LoRA beside the grid")
        dropout: float = Field(0.0, ge=0.0, le=0.99, description="dropout on the adapter's input")

        @model_validator(mode="after")
        def _rank_splits(self):
            if self.r % self.gralora_k:
                raise ValueError(f"r={self.r} must be divisible by gralora_k={self.gralora_k}")
            return self

    def peft_config(self, model, task, **hp):
        return peft.GraloraConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            alpha=hp["alpha"],
            gralora_k=hp["gralora_k"],
            hybrid_r=hp["hybrid_r"],
            gralora_dropout=hp["dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )


class Hira(PeftMethod):
    name = "hira"
    description = (
        "High-rank updates: a low-rank product multiplied entry-wise with the weight (Huang et al., 2025)."
    )
    search_space = {"learning_rate": [1.5e-2, 4.5e-2, 1.5e-1, 4.5e-1]}
    search_space_source = comparison_rate("4.5e-3")
    size_key = "r"

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(4.5e-2)
        r: int = Field(8, ge=1, description="rank of the product multiplied with the weight")
        dropout: float = Field(0.0, ge=0.0, le=0.99, description="dropout on the adapter's input")

    def peft_config(self, model, task, **hp):
        return peft.HiraConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            hira_dropout=hp["dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )


class Miss(PeftMethod):
    name = "miss"
    description = (
        "Matrix shard sharing: one trained matrix whose shards update every block of a weight (Kang, 2024)."
    )
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    search_space_source = comparison_rate("1e-4")
    size_key = "r"
    unsupported = {"gpt2": conv1d_reason("MiSS")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        r: int = Field(
            16, ge=1, description="shard width along the input (r x output-size parameters per weight)"
        )
        mini_r: int = Field(1, ge=1, description="shards along the output dimension (must divide it)")
        dropout: float = Field(0.0, ge=0.0, le=0.99, description="dropout on the adapter's input")

    def peft_config(self, model, task, **hp):
        return peft.MissConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            mini_r=hp["mini_r"],
            miss_dropout=hp["dropout"],
            target_modules=hp["target_modules"],
        )


METHODS = (Delora, Gralora, Hira, Miss)
