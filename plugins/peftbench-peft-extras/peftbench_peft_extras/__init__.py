"""Further peft methods for peftbench, each a few lines on ``PeftMethod`` (AdaLoRA a few more: it
acts during training through the training hooks).

peft's own per-architecture defaults choose the target modules (``c_attn`` on GPT-2,
``query``/``value`` on BERT); GPT-2's transposed ``Conv1D`` projections get ``fan_in_fan_out``.
Methods a model cannot run correctly refuse it with a sentence saying why (``refuse_*``).
"""

from __future__ import annotations

import inspect
import warnings

import peft
import torch
from pydantic import Field, model_validator

from peftbench import (
    ModuleNames,
    PeftbenchError,
    PeftMethod,
    TrainingHyperparameters,
    hookimpl,
    learning_rate_field,
)
from peftbench.methods.base import has_conv1d_projections

SEQ_CLS = peft.TaskType.SEQ_CLS
ADALORA_DEFAULT_TARGETS = peft.utils.TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING
# AdaLoRA saves its final ranks under "<module>.lora_E" keys; peft's generic LoRA check then warns
# that they match no module, although AdaLoRA's own loader resizes every module by them.
warnings.filterwarnings(
    "ignore", message="The following rank_pattern keys did not match", category=RuntimeWarning
)


def refuse_conv1d(method: str, model) -> None:
    """peft's LyCORIS adapters (LoHa, LoKr) support nn.Linear/Conv, not GPT-2's transposed Conv1D."""
    if has_conv1d_projections(model):
        raise PeftbenchError(
            f"{method} cannot adapt {type(model).__name__}: peft's {method} does not support GPT-2-style "
            "Conv1D projections; use lora, dora or vera on this model"
        )


# Text of the transformers sequence-classification forwards that pool the last non-padding token
# and find it from ``input_ids`` (GPT-2, GPT-Neo, Llama, Mistral, ...): the variable name of
# recent releases, and the warning older releases also log when only embeddings are given.
_POOLS_LAST_TOKEN_BY_PAD_ID = ("last_non_pad_token", "will not detect padding tokens in `inputs_embeds`")


def pools_last_token_from_input_ids(model) -> bool:
    """Whether ``model``'s forward pools the last non-padding token, found from ``input_ids``.

    Such a model, given ``inputs_embeds`` without ``input_ids``, pools the last position instead,
    which with right padding is a padding token for every example shorter than its batch's longest.
    Encoder heads (BERT's ``[CLS]`` pooler) pool the first position and are not affected.
    """
    for cls in type(model).__mro__:
        if "forward" in vars(cls):
            try:
                source = inspect.getsource(cls.forward)
            except (OSError, TypeError):  # no source to read (compiled, or built at run time)
                return False
            return any(marker in source for marker in _POOLS_LAST_TOKEN_BY_PAD_ID)
    return False


def refuse_last_token_pooling(method: str, model) -> None:
    """peft's soft-prompt methods feed ``inputs_embeds`` only, so a last-token head pools padding."""
    if pools_last_token_from_input_ids(model):
        raise PeftbenchError(
            f"{method} cannot train {type(model).__name__}: its classification head pools the last "
            f"non-padding token, found from input_ids, but peft's {method} passes only inputs_embeds, "
            "so it would pool a padding token and predictions would depend on the batch; "
            "use prefix_tuning (or lora) on this model"
        )


class LycorisHyperparameters(TrainingHyperparameters):
    learning_rate: float = learning_rate_field(2e-3)
    r: int = Field(8, ge=1, description="rank of each low-rank factor")
    alpha: int = Field(8, description="the update is scaled by alpha / r")


class LoHa(PeftMethod):
    name = "loha"
    description = "Low-rank Hadamard-product adapters (Hyeon-Woo et al., 2022, LyCORIS)."
    size_key = "r"
    Hyperparameters = LycorisHyperparameters

    def peft_config(self, model, task, **hp):
        refuse_conv1d(self.name, model)
        return peft.LoHaConfig(task_type=SEQ_CLS, r=hp["r"], alpha=hp["alpha"])


class LoKr(PeftMethod):
    name = "lokr"
    description = "Low-rank Kronecker-product adapters (Yeh et al., 2023, LyCORIS)."
    size_key = "r"
    Hyperparameters = LycorisHyperparameters

    def peft_config(self, model, task, **hp):
        refuse_conv1d(self.name, model)
        return peft.LoKrConfig(task_type=SEQ_CLS, r=hp["r"], alpha=hp["alpha"])


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


class PromptTuning(PeftMethod):
    name = "prompt_tuning"
    description = "Trained soft-prompt embeddings prepended to the input (Lester et al., 2021)."
    size_key = "num_virtual_tokens"

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(3e-2)
        num_virtual_tokens: int = Field(20, ge=1, description="soft-prompt length in virtual tokens")

    def peft_config(self, model, task, **hp):
        refuse_last_token_pooling(self.name, model)
        return peft.PromptTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=hp["num_virtual_tokens"])


class PTuning(PeftMethod):
    name = "p_tuning"
    description = "Soft prompts produced by a small trained MLP encoder (Liu et al., 2021)."
    size_key = "encoder_hidden_size"  # the encoder MLP holds most of its parameters

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-2)
        num_virtual_tokens: int = Field(20, ge=1, description="soft-prompt length in virtual tokens")
        encoder_hidden_size: int = Field(128, ge=1, description="hidden size of the prompt encoder MLP")

    def peft_config(self, model, task, **hp):
        refuse_last_token_pooling(self.name, model)
        return peft.PromptEncoderConfig(
            task_type=SEQ_CLS,
            num_virtual_tokens=hp["num_virtual_tokens"],
            encoder_hidden_size=hp["encoder_hidden_size"],
        )


class AdaLora(PeftMethod):
    """AdaLoRA: SVD-shaped LoRA whose rank budget moves to the matrices that matter during training.

    Written with peftbench's training hooks only: the planned number of steps sets the
    schedule (no user input), ``after_step`` re-allocates the ranks (with the gradients still
    there, as peft requires), and ``extra_loss`` adds the orthogonality regulariser that peft
    only adds when the model computes the loss itself.
    """

    name = "adalora"
    description = (
        "Adaptive-rank LoRA: the rank budget moves to the most important matrices (Zhang et al., 2023)."
    )

    # 1e-2 won on validation accuracy over 1e-3 and 3e-3 (MiniLM x rotten_tomatoes, one epoch): with
    # its singular values starting at zero, AdaLoRA needs a larger step than LoRA to move in an epoch.
    search_space = {"learning_rate": [3e-3, 1e-2, 3e-2, 1e-1]}
    # Every matrix is built with init_r ranks (the cut to target_r masks them, it frees nothing),
    # so init_r sets the trainable parameters; it must stay above target_r (set that with --hp).
    size_key = "init_r"

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(1e-2)
        init_r: int = Field(12, ge=1, description="rank each adapted matrix starts with")
        target_r: int = Field(8, ge=1, description="average rank the budget is cut down to")
        tinit: float = Field(0.1, ge=0.0, lt=1.0, description="share of the steps before ranks are cut")
        tfinal: float = Field(0.2, ge=0.0, lt=1.0, description="share of the last steps with the final ranks")
        delta_t: int = Field(1, ge=1, description="optimiser steps between two re-allocations")
        beta1: float = Field(0.85, ge=0.0, lt=1.0, description="smoothing of the importance estimate")
        beta2: float = Field(0.85, ge=0.0, lt=1.0, description="smoothing of its uncertainty")
        orth_reg_weight: float = Field(0.5, ge=0.0, description="weight of the orthogonality regulariser")
        lora_alpha: int = Field(8, description="the update is scaled by lora_alpha / r")
        lora_dropout: float = Field(0.1, ge=0.0, le=0.99, description="dropout on the adapter's input")
        target_modules: ModuleNames = Field(
            None, description="modules to adapt (default: peft's for the architecture)"
        )

        @model_validator(mode="after")
        def _a_budget_that_shrinks(self):
            if self.target_r >= self.init_r:
                raise ValueError(
                    f"target_r={self.target_r} must be below init_r={self.init_r}: the budget only shrinks"
                )
            if self.tinit + self.tfinal >= 1:
                raise ValueError(
                    f"tinit={self.tinit:g} + tfinal={self.tfinal:g} must be below 1: "
                    "no steps would be left to re-allocate ranks in"
                )
            return self

    def peft_config(self, model, task, **hp):
        if task.plan is None:
            raise PeftbenchError("adalora sets its schedule from the training plan: run it in a sweep")
        steps = task.plan.total_steps
        tinit, tfinal = (
            int(steps * hp["tinit"]),
            max(1, int(steps * hp["tfinal"])),
        )  # the final cut needs a step
        if steps - tfinal - tinit < 1:
            raise PeftbenchError(
                f"adalora needs steps to re-allocate ranks in, but this run has {steps} (of which "
                f"tinit={tinit} before and tfinal={tfinal} after): train longer (--epochs, --max-steps)"
            )
        model_type = getattr(model.config, "model_type", None)
        if hp["target_modules"] is None and model_type not in ADALORA_DEFAULT_TARGETS:
            raise PeftbenchError(
                f"adalora has no default modules to adapt in a {model_type} model: name them, e.g. "
                "--hp adalora.target_modules=q_proj,v_proj"
            )
        return peft.AdaLoraConfig(
            task_type=SEQ_CLS,
            init_r=hp["init_r"],
            target_r=hp["target_r"],
            total_step=steps,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=hp["delta_t"],
            beta1=hp["beta1"],
            beta2=hp["beta2"],
            orth_reg_weight=hp["orth_reg_weight"],
            lora_alpha=hp["lora_alpha"],
            lora_dropout=hp["lora_dropout"],
            target_modules=hp["target_modules"],
            fan_in_fan_out=has_conv1d_projections(model),
        )

    def after_step(self, model, step):
        # peft counts steps from 0: importance is measured from the first step, the final cut
        # falls on step total_step - tfinal, which a run of total_step steps reaches.
        model.base_model.update_and_allocate(step - 1)

    def extra_loss(self, model):
        """peft's orthogonality regulariser: mean Frobenius distance of P P^T and Q^T Q from I."""
        weight = model.peft_config[model.active_adapter].orth_reg_weight
        distances = []
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and ("lora_A" in name or "lora_B" in name):
                product = parameter @ parameter.T if "lora_A" in name else parameter.T @ parameter
                eye = torch.eye(len(product), device=product.device, dtype=product.dtype)
                distances.append(torch.linalg.matrix_norm(product - eye))
        return weight * torch.stack(distances).mean()


METHODS = (LoHa, LoKr, DoRA, VeRA, PromptTuning, PTuning, AdaLora)


@hookimpl
def register_methods(register):
    for method in METHODS:
        register(method())
