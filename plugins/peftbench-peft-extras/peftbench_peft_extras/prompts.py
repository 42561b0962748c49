"""Soft prompts from peft: prompt tuning and P-tuning (refused where the head pools the last token)."""

from __future__ import annotations

import peft
from pydantic import Field

from peftbench import PeftMethod, TrainingHyperparameters, learning_rate_field
from peftbench_peft_extras._common import LAST_TOKEN_REASON, SEQ_CLS, refuse_last_token_pooling

LAST_TOKEN = {"gpt2": LAST_TOKEN_REASON, "llama": LAST_TOKEN_REASON}


class PromptTuning(PeftMethod):
    name = "prompt_tuning"
    description = "Trained soft-prompt embeddings prepended to the input (Lester et al., 2021)."
    size_key = "num_virtual_tokens"
    unsupported = LAST_TOKEN

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
    unsupported = LAST_TOKEN

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


METHODS = (PromptTuning, PTuning)
