"""Further peft methods for peftbench, each a few lines on ``PeftMethod``.

peft's own per-architecture defaults choose the target modules (``c_attn`` on GPT-2,
``query``/``value`` on BERT); GPT-2's transposed ``Conv1D`` projections get ``fan_in_fan_out``.
Methods a model cannot run correctly refuse it with a sentence saying why (``refuse_*``).
"""

from __future__ import annotations

import inspect

import peft
from pydantic import Field

from peftbench import PeftbenchError, PeftMethod, TrainingHyperparameters, hookimpl, learning_rate_field
from peftbench.methods.base import has_conv1d_projections

SEQ_CLS = peft.TaskType.SEQ_CLS


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
    Hyperparameters = LycorisHyperparameters

    def peft_config(self, model, task, **hp):
        refuse_conv1d(self.name, model)
        return peft.LoHaConfig(task_type=SEQ_CLS, r=hp["r"], alpha=hp["alpha"])


class LoKr(PeftMethod):
    name = "lokr"
    description = "Low-rank Kronecker-product adapters (Yeh et al., 2023, LyCORIS)."
    Hyperparameters = LycorisHyperparameters

    def peft_config(self, model, task, **hp):
        refuse_conv1d(self.name, model)
        return peft.LoKrConfig(task_type=SEQ_CLS, r=hp["r"], alpha=hp["alpha"])


class DoRA(PeftMethod):
    name = "dora"
    description = "Weight-decomposed LoRA: low-rank direction plus a learned magnitude (Liu et al., 2024)."

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

    class Hyperparameters(TrainingHyperparameters):
        learning_rate: float = learning_rate_field(3e-2)
        num_virtual_tokens: int = Field(20, ge=1, description="soft-prompt length in virtual tokens")

    def peft_config(self, model, task, **hp):
        refuse_last_token_pooling(self.name, model)
        return peft.PromptTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=hp["num_virtual_tokens"])


class PTuning(PeftMethod):
    name = "p_tuning"
    description = "Soft prompts produced by a small trained MLP encoder (Liu et al., 2021)."

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


METHODS = (LoHa, LoKr, DoRA, VeRA, PromptTuning, PTuning)


@hookimpl
def register_methods(register):
    for method in METHODS:
        register(method())
