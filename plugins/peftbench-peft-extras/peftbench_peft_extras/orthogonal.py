"""Multiplicative adapters from peft that rotate (or reflect) what a layer computes: OFT, BOFT, HRA
and RoAd. All four adapt ``nn.Linear`` layers only, so they are refused on GPT-2.

Learning rates: peft's comparison (Llama-3.2-3B on MetaMathQA) trains OFT, BOFT and HRA at its
default 1e-4 and RoAd at 1e-3 (peft's RoAd docs: "around 1e-3", higher than LoRA). peftbench's
defaults are ten times those, the factor between peftbench's LoRA default on a classifier (1e-3)
and the comparison's LoRA (1e-4); ``--tune`` tries a third of it to ten times it.
"""

from __future__ import annotations

import math
from typing import Literal

import peft
from pydantic import Field, model_validator

from peftbench import PeftbenchError, PeftMethod, learning_rate_field
from peftbench.methods.base import has_conv1d_projections
from peftbench_peft_extras._common import (
    SEQ_CLS,
    TargetedHyperparameters,
    adapted_shapes,
    common_divisor,
    comparison_rate,
    conv1d_reason,
)

ROAD_TARGETS = peft.utils.constants.TRANSFORMERS_MODELS_TO_ROAD_TARGET_MODULES_MAPPING
OFT_TARGETS = peft.utils.constants.TRANSFORMERS_MODELS_TO_OFT_TARGET_MODULES_MAPPING
BOFT_TARGETS = peft.utils.constants.TRANSFORMERS_MODELS_TO_BOFT_TARGET_MODULES_MAPPING


def refuse_block_size(method: str, size: int, model, targets, mapping) -> None:
    """A block size must divide every adapted layer's input size: else say which ones would
    (peft would quietly move OFT's to a divisor, so the record would not say what trained)."""
    inputs = sorted({shape[1] for shape in adapted_shapes(model, targets, mapping)})
    if any(width % size for width in inputs):
        common = math.gcd(*inputs)
        divisors = ", ".join(str(d) for d in range(1, common + 1) if common % d == 0)
        raise PeftbenchError(
            f"{method}: block_size={size} does not divide the adapted layers' input sizes "
            f"({', '.join(map(str, inputs))}): use one of {divisors}"
        )


class Oft(PeftMethod):
    name = "oft"
    description = (
        "Orthogonal fine-tuning: a learned block-diagonal rotation of each weight (Qiu et al., 2023)."
    )
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    search_space_source = comparison_rate("1e-4")
    size_key = "block_size"
    unsupported = {"gpt2": conv1d_reason("OFT")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        block_size: int = Field(
            32,
            ge=1,
            description="size of each orthogonal block; must divide every adapted layer's input size",
        )
        coft: bool = Field(
            False, description="constrained OFT: keep each rotation within eps of the identity"
        )
        eps: float = Field(6e-5, gt=0, description="how far COFT lets a rotation move (with coft only)")
        block_share: bool = Field(False, description="one rotation shared by all blocks of a layer")
        use_cayley_neumann: bool = Field(
            True,
            description="approximate the Cayley transform by a Neumann series: faster, less exactly "
            "orthogonal",
        )
        num_cayley_neumann_terms: int = Field(5, ge=1, description="terms of that Neumann series")
        module_dropout: float = Field(
            0.0, ge=0.0, lt=1.0, description="chance of leaving a block at the identity in a training step"
        )

    def peft_config(self, model, task, **hp):
        refuse_block_size(self.name, hp["block_size"], model, hp["target_modules"], OFT_TARGETS)
        return peft.OFTConfig(
            task_type=SEQ_CLS,
            r=0,
            oft_block_size=hp["block_size"],
            coft=hp["coft"],
            eps=hp["eps"],
            block_share=hp["block_share"],
            use_cayley_neumann=hp["use_cayley_neumann"],
            num_cayley_neumann_terms=hp["num_cayley_neumann_terms"],
            module_dropout=hp["module_dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )


class Boft(PeftMethod):
    name = "boft"
    description = "Orthogonal fine-tuning with butterfly-factorised rotations (Liu et al., 2024)."
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    search_space_source = comparison_rate("1e-4")
    size_key = "block_size"
    unsupported = {"gpt2": conv1d_reason("BOFT")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        block_size: int = Field(
            4, ge=1, description="size of each butterfly block (must divide every input size)"
        )
        n_butterfly_factor: int = Field(
            1,
            ge=1,
            description="butterfly factors per rotation (peft uses 1 where its CUDA extension cannot "
            "be built, as on the CPU)",
        )
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="chance of leaving a block at the identity")

    def peft_config(self, model, task, **hp):
        refuse_block_size(self.name, hp["block_size"], model, hp["target_modules"], BOFT_TARGETS)
        return peft.BOFTConfig(
            task_type=SEQ_CLS,
            boft_block_size=hp["block_size"],
            boft_n_butterfly_factor=hp["n_butterfly_factor"],
            boft_dropout=hp["dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )


class Hra(PeftMethod):
    name = "hra"
    description = "A chain of r learned Householder reflections of each weight (Yuan et al., 2024)."
    search_space = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}
    search_space_source = comparison_rate("1e-4")
    size_key = "r"
    unsupported = {"gpt2": conv1d_reason("HRA")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        r: int = Field(
            8, ge=2, description="reflections per adapted weight (even: pairs start as the identity)"
        )
        apply_gs: bool = Field(
            False, description="orthogonalise the reflections (Gram-Schmidt) at every step"
        )

        @model_validator(mode="after")
        def _pairs_of_reflections(self):
            if self.r % 2:
                raise ValueError(
                    f"r={self.r} must be even: HRA starts at the base model with pairs of reflections"
                )
            return self

    def peft_config(self, model, task, **hp):
        return peft.HRAConfig(
            task_type=SEQ_CLS, r=hp["r"], apply_GS=hp["apply_gs"], target_modules=hp["target_modules"]
        )


class Road(PeftMethod):
    name = "road"
    description = "Learned 2D rotations (and scales) of pairs of each layer's outputs (Liao et al., 2024)."
    search_space = {"learning_rate": [3e-3, 1e-2, 3e-2, 1e-1]}
    search_space_source = comparison_rate("1e-3; peft's RoAd docs: about 1e-3, higher than LoRA's")
    size_key = None  # fixed by the variant and the adapted layers' output sizes
    unsupported = {"gpt2": conv1d_reason("RoAd")}

    class Hyperparameters(TargetedHyperparameters):
        learning_rate: float = learning_rate_field(1e-2)
        variant: Literal["road_1", "road_2", "road_4"] = Field(
            "road_1",
            description="parameters per pair of outputs: road_1 (fewest), road_2 twice, road_4 four times",
        )
        group_size: int | None = Field(
            None,
            ge=2,
            description="outputs grouped for rotation, even and dividing every output size; only speed "
            "depends on it (default: the largest such size up to 64, peft's default)",
        )

        @model_validator(mode="after")
        def _even_groups(self):
            if self.group_size is not None and self.group_size % 2:
                raise ValueError(f"group_size={self.group_size} must be even: outputs are rotated in pairs")
            return self

    def peft_config(self, model, task, **hp):
        outputs = [shape[0] for shape in adapted_shapes(model, hp["target_modules"], ROAD_TARGETS)]
        return peft.RoadConfig(
            task_type=SEQ_CLS,
            variant=hp["variant"],
            group_size=hp["group_size"] or common_divisor(outputs, 64, even=True),
            target_modules=hp["target_modules"],
        )


METHODS = (Oft, Boft, Hra, Road)
