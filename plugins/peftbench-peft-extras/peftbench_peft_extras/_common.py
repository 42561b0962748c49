"""What the extras' methods share: peft's task type, the reasons a model family is refused, and the
parts of a model some methods size themselves by."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import peft
from pydantic import Field
from torch import nn

from peftbench import ModuleNames, PeftbenchError, TrainingHyperparameters, classification_head
from peftbench.methods.base import has_conv1d_projections

SEQ_CLS = peft.TaskType.SEQ_CLS
TARGETS_HELP = "modules to adapt, e.g. query,value (default: peft's for the architecture)"


def conv1d_reason(label: str) -> str:
    """Why a peft tuner that adapts ``nn.Linear`` only is refused on GPT-2."""
    return (
        f"peft's {label} adapts nn.Linear layers only, not GPT-2's transposed Conv1D projections; "
        "use lora, dora, vera or fourierft on GPT-2"
    )


#: Why peft's soft prompts are refused on decoders that classify from the last non-padding token.
LAST_TOKEN_REASON = (
    "its classification head pools the last non-padding token, found from input_ids, but peft's soft "
    "prompts pass only inputs_embeds, so it would pool a padding token and predictions would depend "
    "on the batch; use prefix_tuning (or lora) on this model"
)


def comparison_rate(rate: str) -> str:
    """Where a search space scaled from peft's comparison configurations comes from."""
    return (
        f"ten times the rate peft's comparison trains it at ({rate} on Llama-3.2-3B, MetaMathQA), the factor "
        "between peftbench's LoRA default on a classifier (1e-3) and the comparison's LoRA (1e-4); "
        "a third of it to ten times it"
    )


class TargetedHyperparameters(TrainingHyperparameters):
    """The training hyper-parameters plus the modules a peft tuner adapts."""

    target_modules: ModuleNames = Field(None, description=TARGETS_HELP)


def refuse_conv1d(method: str, label: str, model) -> None:
    """Refuse a GPT-2-style model in ``peft_config`` too, for callers outside a sweep."""
    if has_conv1d_projections(model):
        raise PeftbenchError(f"{method} cannot adapt {type(model).__name__}: {conv1d_reason(label)}")


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
        raise PeftbenchError(f"{method} cannot train {type(model).__name__}: {LAST_TOKEN_REASON}")


def head_scaled(model: nn.Module, scale: float) -> Callable[[str], float]:
    """A learning-rate multiplier by parameter name: ``scale`` for the classification head (peft's
    trained copy of it), 1 for the rest; for ``peftbench.parameter_groups``."""
    head = {id(p) for p in classification_head(model).parameters()}
    names = {name for name, p in model.named_parameters() if id(p) in head}
    return lambda name: scale if name in names else 1.0


def adapted_shapes(model: nn.Module, targets: list[str] | None, mapping: dict) -> list[tuple[int, int]]:
    """The weight shapes of the layers a tuner will adapt: those named by ``targets`` (by name
    suffix, as peft matches a list), else peft's defaults for the architecture (``mapping``)."""
    names = targets or mapping.get(getattr(model.config, "model_type", None)) or []
    shapes = [
        tuple(module.weight.shape)
        for name, module in model.named_modules()
        if any(name == t or name.endswith("." + t) for t in names)
        and getattr(module, "weight", None) is not None
    ]
    if not shapes:
        raise PeftbenchError(
            f"no layer of {type(model).__name__} matches {', '.join(names) or 'a default'}: name the modules "
            "to adapt with --hp METHOD.target_modules=..."
        )
    return shapes


def common_divisor(sizes: list[int], at_most: float = math.inf, even: bool = False) -> int:
    """The largest whole number up to ``at_most`` (and even, if asked) that divides every size."""
    gcd = math.gcd(*sizes)
    found = [d for d in range(1, gcd + 1) if gcd % d == 0 and d <= at_most and not (even and d % 2)]
    if not found:
        raise PeftbenchError(f"no {'even ' if even else ''}size up to {at_most} divides {sorted(set(sizes))}")
    return max(found)
