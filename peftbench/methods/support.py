"""What works where: the model families peftbench tells apart, and which ones each method refuses.

A method declares the families it cannot train in ``Method.unsupported`` (family -> why, one
sentence). A sweep refuses such a pair in one line before anything trains, naming the method, the
model and the reason, instead of a failed run. The families are told apart from the loaded model
itself, not from its name: GPT-2 stores its projections in ``Conv1D`` layers, which many of peft's
tuners cannot adapt; decoders with ``nn.Linear`` projections (Llama, Mistral, Qwen, ...) classify
from the last non-padding token like GPT-2; encoders (BERT, RoBERTa, MiniLM, ...) from the first.

The default test suite probes every method on a tiny model of each family with two training steps,
a save and a reload (``tests/test_model_support.py``) and checks the result against the
declaration; the site's *Model support* page shows the same matrix.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from peftbench.errors import PeftbenchError
from peftbench.methods.base import has_conv1d_projections

#: Family key -> how pages and messages name it.
FAMILIES = {"gpt2": "GPT-2", "bert": "BERT-like", "llama": "Llama-like"}
#: What each family covers, and the tiny model of it that the tests probe.
FAMILY_NOTES = {
    "gpt2": "decoders with transposed Conv1D projections (GPT-2, DistilGPT-2); probed on tiny-gpt2",
    "bert": "encoders that classify from the first token (BERT, RoBERTa, MiniLM, DistilBERT); "
    "probed on tiny-bert",
    "llama": "decoders with nn.Linear projections that classify from the last token (Llama, Mistral, "
    "Qwen, GPT-Neo); probed on tiny-llama",
}
#: The tiny model alias each family is probed on.
PROBE_MODELS = {"gpt2": "tiny-gpt2", "bert": "tiny-bert", "llama": "tiny-llama"}


def model_family(model: nn.Module) -> str | None:
    """The family of a sequence-classification model as loaded (before any method changes it);
    ``None`` for one peftbench does not tell apart (T5, BART, ...): nothing is refused there."""
    if has_conv1d_projections(model):
        return "gpt2"
    if isinstance(getattr(model, "score", None), nn.Module):  # decoders' head, fed the last token
        return "llama"
    if isinstance(getattr(model, "classifier", None), nn.Module):  # encoders' head
        return "bert"
    return None


def refusal(method, model: nn.Module, model_name: str) -> str | None:
    """Why ``method`` cannot train ``model`` (named ``model_name``), in one sentence; ``None`` if it can."""
    family = model_family(model)
    reason = method.unsupported.get(family) if family else None
    if not reason:
        return None
    return f"method '{method.name}' cannot train model '{model_name}' ({FAMILIES[family]}): {reason}"


def refuse_unsupported(methods: Iterable, model: nn.Module, model_name: str) -> None:
    """One line before anything trains when any of ``methods`` cannot train ``model``."""
    refused = [(method, refusal(method, model, model_name)) for method in methods]
    refused = [(method, why) for method, why in refused if why]
    if refused:
        others = [method.name for method, _ in refused[1:]]
        also = f"; also refused here: {', '.join(others)} (drop them from --methods)" if others else ""
        raise PeftbenchError(refused[0][1] + also)


def declaration_problem(unsupported: object) -> str | None:
    """What is wrong with a method's ``unsupported`` declaration, for the registry; ``None`` if fine."""
    if not isinstance(unsupported, dict):
        return f"its unsupported must be a dict of family -> reason, got {type(unsupported).__name__}"
    for family, reason in unsupported.items():
        if family not in FAMILIES:
            return f"its unsupported names family {family!r}; known families: {', '.join(FAMILIES)}"
        if not isinstance(reason, str) or not reason.strip():
            return f"its unsupported[{family!r}] must say why in a sentence"
    return None
