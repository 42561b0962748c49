"""LoRA as users tune it: DoRA, rsLoRA's scaling, PiSSA's and OLoRA's initialisations, LoRA+'s faster
B matrices and LoRA-FA's frozen A (the last two through peftbench's optimizer hook).

Learning rates: these train the same A/B matrices as ``lora`` and keep its range (peftbench's
``lora`` searches 3e-4 to 1e-2 on a classifier; peft's comparison runs LoRA, rsLoRA and LoRA-FA at
1e-4 on Llama-3.2-3B); LoRA+ starts from half of it, as peft's ``create_loraplus_optimizer``
advises ("slightly smaller (e.g., by a factor of 2) than typical vanilla LoRA learning rates").

PiSSA and OLoRA change the base weights they adapt (the adapter starts from their principal or
orthonormal components, the base keeps the rest). Their saved adapter is converted the way peft
documents (``path_initial_model_for_weight_conversion``): a plain LoRA of twice the rank that
applies to the original base weights, so it reloads onto a fresh base model like any LoRA.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import peft
from peft.optimizers import create_lorafa_optimizer
from pydantic import Field
from safetensors.torch import load_file, save_file

from peftbench import PeftMethod, TrainingHyperparameters, learning_rate_field, parameter_groups
from peftbench.methods.base import has_conv1d_projections
from peftbench_peft_extras._common import SEQ_CLS, TargetedHyperparameters

LORA_RATES = [3e-4, 1e-3, 3e-3, 1e-2]  # peftbench's lora search space
# peft warns when the conversion on save loads the initial adapter beside the trained one, which
# is the conversion it advises; the saved adapter is a plain LoRA.
warnings.filterwarnings("ignore", message="(PiSSA|OLoRA) changes the base weights", category=UserWarning)


class LoraHyperparameters(TargetedHyperparameters):
    learning_rate: float = learning_rate_field(1e-3)
    r: int = Field(8, ge=1, description="rank of the low-rank update of each adapted weight")
    lora_alpha: int = Field(16, ge=1, description="the update is scaled by lora_alpha / r")
    lora_dropout: float = Field(0.1, ge=0.0, le=0.99, description="dropout on the adapter's input")


class LoraVariant(PeftMethod):
    """A LoRA whose ``LoraConfig`` differs from plain LoRA by ``lora_options``."""

    search_space = {"learning_rate": LORA_RATES}
    search_space_source = (
        "lora's range (the same A and B matrices; peft's comparison trains LoRA, rsLoRA and LoRA-FA "
        "at 1e-4 on Llama-3.2-3B, a tenth of peftbench's LoRA default on a classifier)"
    )
    size_key = "r"
    Hyperparameters = LoraHyperparameters

    def lora_options(self, hp) -> dict:
        return {}

    def peft_config(self, model, task, **hp):
        return peft.LoraConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            lora_alpha=hp["lora_alpha"],
            lora_dropout=hp["lora_dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
            **self.lora_options(hp),
        )


class DoRA(PeftMethod):
    name = "dora"
    description = "Weight-decomposed LoRA: low-rank direction plus a learned magnitude (Liu et al., 2024)."
    size_key = "r"

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-3)
        r: int = Field(8, ge=1, description="rank of the low-rank direction update")
        lora_alpha: int = Field(16, description="the update is scaled by lora_alpha / r")
        lora_dropout: float = Field(0.1, ge=0.0, le=0.99, description="dropout on the adapter's input")

    def peft_config(self, model, task, **hp):
        return peft.LoraConfig(
            task_type=SEQ_CLS,
            r=hp["r"],
            lora_alpha=hp["lora_alpha"],
            lora_dropout=hp["lora_dropout"],
            use_dora=True,
            fan_in_fan_out=has_conv1d_projections(model),
        )


class RsLora(LoraVariant):
    name = "rslora"
    description = "LoRA scaled by lora_alpha / sqrt(r), stable as the rank grows (Kalajdzievski, 2023)."

    def lora_options(self, hp):
        return {"use_rslora": True}


class BaseChangingLora(LoraVariant):
    """A LoRA initialised from the base weights, which keep what the adapter took (PiSSA, OLoRA).

    ``prepare`` keeps the adapter as initialised (on the CPU, beside the model); ``save`` has peft
    convert the trained adapter against it into a plain LoRA of the original base weights. peft's
    conversion keeps only the LoRA matrices, so the trained head (and anything else the adapter
    saves beside them) is put back into the converted file.
    """

    INITIAL = "peftbench_initial_adapter"

    class Hyperparameters(LoraHyperparameters):
        lora_alpha: int = Field(8, ge=1, description="the update is scaled by lora_alpha / r")
        lora_dropout: float = Field(
            0.0,
            ge=0.0,
            le=0.99,
            description="dropout on the adapter's input (0: the adapter is the base's own)",
        )

    def prepare(self, model, task, hp):
        model = super().prepare(model, task, hp)
        state = peft.get_peft_model_state_dict(model)
        setattr(model, self.INITIAL, {key: value.detach().cpu().clone() for key, value in state.items()})
        return model

    def save(self, model, directory):
        with tempfile.TemporaryDirectory() as folder:
            initial = Path(folder) / "initial"
            initial.mkdir()
            save_file(getattr(model, self.INITIAL), str(initial / "adapter_model.safetensors"))
            model.save_pretrained(
                str(directory), safe_serialization=True, path_initial_model_for_weight_conversion=str(initial)
            )
        weights = str(directory / "adapter_model.safetensors")
        converted = load_file(weights)
        for key, value in peft.get_peft_model_state_dict(model).items():
            if "lora_" not in key:
                converted.setdefault(key, value.detach().contiguous())
        save_file(converted, weights, metadata={"format": "pt"})


class Pissa(BaseChangingLora):
    name = "pissa"
    description = (
        "LoRA initialised from each weight's principal singular vectors; the base keeps the residual "
        "(Meng et al., 2024)."
    )

    class Hyperparameters(BaseChangingLora.Hyperparameters):
        svd_iterations: int = Field(
            0,
            ge=0,
            description="0: exact SVD of each adapted weight, as in the paper; N: peft's randomized SVD with "
            "N subspace iterations (pissa_niter_N), much faster on large weights",
        )

    def lora_options(self, hp):
        iterations = hp["svd_iterations"]
        return {"init_lora_weights": f"pissa_niter_{iterations}" if iterations else "pissa"}


class Olora(BaseChangingLora):
    name = "olora"
    description = (
        "LoRA initialised from an orthonormal (QR) basis of each weight; the base keeps the rest "
        "(Büyükakyüz, 2024)."
    )
    unsupported = {
        "gpt2": "peft's OLoRA initialisation ignores fan_in_fan_out, so it cannot factor GPT-2's transposed "
        "Conv1D weights; use pissa or lora on GPT-2"
    }

    def lora_options(self, hp):
        return {"init_lora_weights": "olora"}


class LoraPlus(LoraVariant):
    name = "lora_plus"
    description = "LoRA whose B matrices learn ratio times faster than its A matrices (Hayou et al., 2024)."
    search_space = {"learning_rate": [rate / 2 for rate in LORA_RATES]}
    search_space_source = (
        "half of lora's range, as peft's create_loraplus_optimizer advises; ratio 16 is the paper's default"
    )

    class Hyperparameters(LoraHyperparameters):
        learning_rate: float = learning_rate_field(5e-4)
        ratio: float = Field(
            16.0,
            ge=1.0,
            description="B's learning rate over A's (the paper's default 2^4); the rest learns as A",
        )

    def optimizer(self, model, hp):
        return parameter_groups(model, hp, lambda name: hp["ratio"] if "lora_B" in name else 1.0)


class LoraFA(LoraVariant):
    name = "lora_fa"
    description = (
        "LoRA with A frozen at its random start and B's gradient projected to match full fine-tuning's "
        "(Zhang et al., 2023)."
    )

    def prepare(self, model, task, hp):
        model = super().prepare(model, task, hp)
        for name, parameter in model.named_parameters():
            if "lora_A" in name:
                parameter.requires_grad_(False)  # A never trains: counted, placed and saved as frozen
        return model

    def optimizer(self, model, hp):
        """peft's LoRA-FA optimizer (AdamW with B's gradient projected through A)."""
        return create_lorafa_optimizer(
            model,
            r=hp["r"],
            lora_alpha=hp["lora_alpha"],
            lr=hp["learning_rate"],
            weight_decay=hp["weight_decay"],
        )


METHODS = (DoRA, RsLora, Pissa, Olora, LoraPlus, LoraFA)
