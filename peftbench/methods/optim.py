"""How a method's trainable parameters are optimised: parameter groups for the harness's AdamW, or
the method's own optimizer (``Method.optimizer``).

The default (``parameter_groups(model, hp)``) is AdamW over every trainable parameter at the
method's learning rate, with weight decay on weights only: biases and normalisation weights
(LayerNorm, RMSNorm, ...) take none. A method that wants more returns its own groups, each with a
multiplier on the learning rate and, where it differs, its own weight decay (LoRA+: the B matrices
at ``ratio`` times the rate of the A matrices), or a whole ``torch.optim.Optimizer`` (LoRA-FA).
Either way the harness applies its warm-up and linear decay to every group alike (each group's
rate is scaled by the same factor) and clips the gradients of every trainable parameter before
each step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from peftbench.errors import PeftbenchError


@dataclass(frozen=True)
class ParameterGroup:
    """Parameters that share a learning rate and a weight decay in the harness's AdamW."""

    params: Sequence[nn.Parameter]
    #: The group's peak learning rate is ``hp["learning_rate"] * lr_scale``.
    lr_scale: float = 1.0
    #: ``None``: the method's ``weight_decay`` hyper-parameter.
    weight_decay: float | None = None
    #: What the group holds, for people reading an optimizer's state ("lora_B", "no decay").
    name: str = ""


def is_normalisation(module: nn.Module) -> bool:
    """LayerNorm, RMSNorm, GroupNorm, BatchNorm, and models' own (``LlamaRMSNorm``, ``T5LayerNorm``)."""
    return "norm" in type(module).__name__.lower()


def parameter_groups(
    model: nn.Module, hp: dict[str, Any], lr_scale: Callable[[str], float] | None = None
) -> list[ParameterGroup]:
    """Every trainable parameter of ``model`` in groups: weights with ``hp["weight_decay"]``,
    biases and normalisation weights without it; ``lr_scale(name)`` (default: 1) sets each
    parameter's learning-rate multiplier. Parameters keep the model's order within a group."""
    no_decay = {id(p) for m in model.modules() if is_normalisation(m) for p in m.parameters(recurse=False)}
    grouped: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            decays = not (name.endswith("bias") or id(parameter) in no_decay)
            grouped.setdefault((lr_scale(name) if lr_scale else 1.0, decays), []).append(parameter)
    return [
        ParameterGroup(
            params, scale, None if decays else 0.0, f"lr x{scale:g}" + ("" if decays else ", no decay")
        )
        for (scale, decays), params in grouped.items()
    ]


def build_optimizer(
    model: nn.Module,
    hp: dict[str, Any],
    device: torch.device,
    supplied: Callable[[], Any] | None = None,
) -> torch.optim.Optimizer:
    """The optimizer of a run: what ``supplied()`` returns (a method's ``optimizer``; by default
    ``parameter_groups``), groups made into AdamW (fused on GPUs) and checked to hold every
    trainable parameter exactly once."""
    chosen = supplied() if supplied is not None else parameter_groups(model, hp)
    if isinstance(chosen, torch.optim.Optimizer):
        return chosen
    if not isinstance(chosen, (list, tuple)) or not all(isinstance(g, ParameterGroup) for g in chosen):
        raise PeftbenchError(
            f"the method's optimizer returned {type(chosen).__name__}: return a list of "
            "peftbench.ParameterGroup or a torch.optim.Optimizer"
        )
    _check_coverage(model, chosen)
    rate, fused = hp["learning_rate"], device.type == "cuda"  # one kernel for the whole update on GPUs
    groups = [
        {
            "params": list(group.params),
            "lr": rate * group.lr_scale,
            "weight_decay": hp["weight_decay"] if group.weight_decay is None else group.weight_decay,
        }
        for group in chosen
        if len(group.params)
    ]
    return torch.optim.AdamW(groups, lr=rate, fused=fused, foreach=not fused)


def _check_coverage(model: nn.Module, groups: Sequence[ParameterGroup]) -> None:
    """Every trainable parameter in exactly one group, and nothing frozen: else one sentence why."""
    names = {id(p): name for name, p in model.named_parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    seen: dict[int, int] = {}
    for group in groups:
        for parameter in group.params:
            seen[id(parameter)] = seen.get(id(parameter), 0) + 1
    problems = [
        ("leave out", [names[key] for key in names if key in trainable and key not in seen]),
        ("repeat", [names.get(key, "?") for key, count in seen.items() if count > 1]),
        ("hold frozen or foreign", [names.get(key, "?") for key in seen if key not in trainable]),
    ]
    for verb, found in problems:
        if found:
            raise PeftbenchError(
                f"the method's parameter groups {verb} {len(found)} parameter(s) (e.g. {found[0]}): "
                "every trainable parameter must be in exactly one group"
            )
