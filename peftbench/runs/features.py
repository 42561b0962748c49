"""Frozen features: a method that trains only on top of the frozen model gets its features once.

A method that declares ``trains_on_features`` (see ``Method``) trains its classification head and
nothing else, on a body left as loaded. The head then learns from nothing but what the body hands
it, so the harness computes that once per sweep and dataset — the base model in eval mode, through
the evaluation batching at the sweep's precision — for every training and validation example, and
trains the head on those vectors instead of running the frozen body at every step.

What the head is handed is its own input at the position the model pools, read by a hook on the
head during the model's forward: BERT-style models pass one pooled vector (the pooler's output,
through a dropout that eval mode switches off) to ``classifier``; GPT-2 and Llama-style models
apply ``score`` to every position and return its output at the last real token, so the pooled
position is the one whose head output the model returned; RoBERTa's classification head takes the
whole sequence and reads its first position, so that position's vector is what it needs. No
model's pooling rule is written down here: each is recognised from the head's input and output
and checked against the model's output. A model whose head reads more than one vector has nothing
to cache, and its runs train through the full model as every method does (their records say so).

The head that trains is the model's own module, so evaluation, saving, reloading and timing go
through the full model unchanged. What differs from training through the full model: no dropout
in the frozen body nor between it and the head (the features are computed in eval mode; a
dropout inside the head module still applies), and nothing to compile. Batches, their order and
the head's initialisation are those of the full model's run with the same seed.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from peftbench.batching import TokenizedSplit, collate, eval_batches
from peftbench.errors import PeftbenchError
from peftbench.evaluation import EvalResult
from peftbench.models import classification_head
from peftbench.precision import autocast
from peftbench.train import to_device

if TYPE_CHECKING:
    from peftbench.runs.context import SweepContext


class NoPooledVector(Exception):
    """The model's head does not take one vector per example that could be cached."""


@dataclass
class FrozenFeatures:
    """The head's input for every training and validation example, and what computing it cost."""

    vectors: torch.Tensor | None  # (train + validation examples, width), fp32 on the CPU
    seconds: float  # the one pass of the frozen model over train and validation
    computed_by: str = "the sweep"  # or the run that computed them for itself
    sequence: bool = False  # the head takes its vector as a one-position sequence (RoBERTa's head)
    #: Why this model's runs train through the full model instead; ``None``: features are cached.
    unavailable: str | None = None


def compute_features(ctx: SweepContext, computed_by: str = "the sweep") -> FrozenFeatures:
    """The frozen model's features on ``ctx``'s training and validation splits, on its device."""
    started = time.perf_counter()
    model = ctx.place(ctx.fresh_model(0), set())  # every seed's body is the same; the head is not read
    try:
        train, sequence = _head_inputs(ctx, model, ctx.train)
        validation, _ = _head_inputs(ctx, model, ctx.validation)
    except NoPooledVector as reason:
        return FrozenFeatures(None, time.perf_counter() - started, computed_by, unavailable=str(reason))
    finally:
        del model
    return FrozenFeatures(
        vectors=torch.cat([train, validation]),
        seconds=time.perf_counter() - started,
        computed_by=computed_by,
        sequence=sequence,
    )


def _head_inputs(ctx: SweepContext, model: nn.Module, split: TokenizedSplit) -> tuple[torch.Tensor, bool]:
    """Per example of ``split``, in split order, what the head reads of its input; and whether the
    head takes it as a sequence (of that one position) rather than as a vector."""
    seen: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen["input"], seen["output"] = args[0], output

    head = classification_head(model)
    handle = head.register_forward_hook(hook)
    model.eval()
    chunks, sequence = [], False
    try:
        with torch.inference_mode(), autocast(ctx.device, ctx.precision):
            for indices in eval_batches(split, ctx.train_config.eval_batch_size):
                batch = to_device(collate(split, indices, ctx.pad_id), ctx.device)
                batch.pop("labels")
                logits = model(**batch).logits
                vectors, sequence = _pooled(head, seen["input"], seen["output"], logits)
                chunks.append((indices, vectors.float().cpu()))
    finally:
        handle.remove()
    table = torch.empty((len(split), chunks[0][1].shape[1]) if chunks else (0, 0))
    for indices, chunk in chunks:
        table[torch.from_numpy(indices)] = chunk
    return table, sequence


def _pooled(
    head: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor, logits: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """What the head read of ``inputs`` for each row of ``logits`` (one vector per example), and
    whether it takes that as a one-position sequence. Three shapes of head are recognised, each
    checked against the model's own output: a head that takes one vector per example (BERT's
    ``classifier``); a head applied at every position whose output the model returns at one of
    them (GPT-2's ``score``: the vector at that position); a head that reads the first position of
    the sequence itself (RoBERTa's classification head: the vector at position 0)."""
    if inputs.dim() == 2 and torch.equal(outputs, logits):
        return inputs, False
    if inputs.dim() == 3 and outputs.dim() == 3 and outputs.shape[:2] == inputs.shape[:2]:
        returned = (outputs == logits[:, None, :]).all(dim=-1)  # (examples, positions)
        if bool(returned.any(dim=-1).all()):
            last = returned.shape[1] - 1 - returned.flip(-1).int().argmax(dim=-1)
            chosen = inputs[torch.arange(len(inputs)), last]
            alike = (inputs == chosen[:, None, :]).all(dim=-1)
            if not bool((returned & ~alike).any()):
                return chosen, False
    if inputs.dim() == 3 and torch.equal(outputs, logits) and torch.equal(head(inputs[:, :1]), outputs):
        return inputs[:, 0], True
    raise NoPooledVector(
        "this model's classification head reads more of the sequence than one vector per example, "
        "so there are no features to cache"
    )


def _row_split(split: TokenizedSplit, offset: int) -> TokenizedSplit:
    """``split`` with each example's tokens replaced by its row of the feature table (as many as it
    has tokens): batching, padding and token counts are those of the tokens."""
    rows = [np.full(len(ids), offset + index, dtype=np.int64) for index, ids in enumerate(split.input_ids)]
    return TokenizedSplit(rows, split.labels)


class HeadOnFeatures(nn.Module):
    """A model's classification head fed cached features: row ``input_ids[:, 0]`` of ``vectors``
    (as a one-position sequence where the head takes one)."""

    def __init__(self, head: nn.Module, vectors: torch.Tensor, sequence: bool = False) -> None:
        super().__init__()
        self.head, self.sequence = head, sequence
        self.register_buffer("vectors", vectors, persistent=False)

    def forward(self, input_ids: torch.Tensor, **_: object) -> SequenceClassifierOutput:
        vectors = self.vectors[input_ids[:, 0]]
        return SequenceClassifierOutput(logits=self.head(vectors[:, None] if self.sequence else vectors))


def head_on_features(
    model: nn.Module, features: FrozenFeatures, ctx: SweepContext, method: str
) -> tuple[HeadOnFeatures, SweepContext]:
    """What trains instead of ``model`` (its own head on the cached features, on the device) and the
    context it trains in (the feature splits; nothing to compile); refuses a method whose
    ``prepare`` left anything but the head trainable."""
    head = classification_head(model)
    in_head = {id(p) for p in head.parameters()}
    outside = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in in_head]
    if outside:
        raise PeftbenchError(
            f"method '{method}' declares trains_on_features, but its prepare left parameters outside "
            f"the classification head trainable ({', '.join(outside[:3])}): freeze them, or drop the "
            "declaration"
        )
    probe = HeadOnFeatures(head, features.vectors, features.sequence).to(ctx.device)
    config = ctx.train_config.model_copy(update={"compile": False})
    return probe, dataclasses.replace(ctx, **feature_splits(ctx), train_config=config)


def feature_splits(ctx: SweepContext) -> dict[str, TokenizedSplit]:
    """``ctx``'s training and validation splits with each example's tokens replaced by its row of
    the feature table (training first), as many as it has tokens: batching, padding and token
    counts are those of the tokens."""
    return {"train": _row_split(ctx.train, 0), "validation": _row_split(ctx.validation, len(ctx.train))}


def features_note(features: FrozenFeatures, run_id: str) -> str:
    """What a record says about the features its run trained on (or why it trained without)."""
    if features.unavailable:
        return f"trained through the full model: {features.unavailable}"
    took = f"in {features.seconds:.1f} s (feature_seconds"
    if features.computed_by == run_id:
        who = f"by this run {took}, within its prepare_seconds)"
    elif features.computed_by == "the sweep":
        who = f"once for this dataset by the sweep {took}) and shared by every run that trains on them"
    else:
        who = f"by run {features.computed_by} {took}) and reused"
    return (
        f"the head trained on the frozen model's features (eval mode: no dropout), computed {who}; "
        "train_seconds is the head's training alone"
    )


def agreement(cached: EvalResult, full: EvalResult) -> str:
    """How the trained head's validation predictions on cached features compare with the full model's."""
    same = int((cached.predictions == full.predictions).sum())
    difference = float(np.abs(cached.logits - full.logits).max()) if len(full.logits) else 0.0
    return (
        f"on validation, the head on cached features and the full model predicted alike for {same} of "
        f"{len(full.predictions)} examples (largest logit difference {difference:.1e})"
    )


def computable_here(device: torch.device) -> bool:
    """Whether this process can run the model on ``device`` (a Ray driver may have no GPU)."""
    return device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available())
