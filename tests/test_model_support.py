"""Which method trains which model family: every cell of the matrix probed on a tiny model of the
family, and the refusal a sweep gives for a pair a method declares unsupported."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import keyword_folder
from peftbench.batching import tokenize_split
from peftbench.data import DatasetSpec, load_splits
from peftbench.evaluation import evaluate_model
from peftbench.methods.base import TaskInfo, TrainingPlan
from peftbench.methods.support import FAMILIES, PROBE_MODELS, model_family
from peftbench.models import load_base_model, load_tokenizer, resolve_model, seeded_copy
from peftbench.plugins import collect_methods
from peftbench.runs.runner import refuse_pickles
from peftbench.settings import TrainConfig
from peftbench.tasks.classification import Classification
from peftbench.train import StepHooks, train

KIND, LABELS = Classification(), ("bad", "good")  # the keyword task the probes train on
CPU = torch.device("cpu")
STEPS = 2
METHODS = collect_methods().names()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A few keyword examples, tokenised once (the three tiny models share GPT-2's tokenizer)."""
    splits = load_splits(DatasetSpec(str(keyword_folder(tmp_path_factory.mktemp("kw"), 64, 16, 16))))
    tokenizer = load_tokenizer(resolve_model("tiny-gpt2"))
    return tokenize_split(tokenizer, splits.train, 32), tokenize_split(tokenizer, splits.test, 32), tokenizer


@pytest.fixture(scope="module")
def bases(data):
    pad = data[2].pad_token_id
    return {f: load_base_model(resolve_model(alias), LABELS, pad) for f, alias in PROBE_MODELS.items()}


def probe(method, base, data, folder) -> str | None:
    """Why ``method`` does not work on ``base`` (``None`` where it does): one training step after
    another changes every parameter it trains, its save reloads onto a fresh base to the same
    predictions, padding changes no prediction, and its merged model predicts as the loaded one."""
    train_split, test, tokenizer = data
    pad = tokenizer.pad_token_id
    prior = (math.log(0.5), math.log(0.5))  # the constant reference rows output the log prior
    task = TaskInfo(2, LABELS, (32, 32), TrainingPlan(STEPS, STEPS, 1.0, 8, "cpu"), constant_outputs=prior)
    try:
        hp = method.hyperparameters()
        torch.manual_seed(0)
        model = method.prepare(seeded_copy(base, 0), task, hp)
        trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        if method.trains:
            hooks = StepHooks(
                extra_loss=(lambda: method.extra_loss(model)) if method.defines("extra_loss") else None,
                after_step=(lambda s: method.after_step(model, s)) if method.defines("after_step") else None,
                optimizer=lambda: method.optimizer(model, hp),
            )
            config = TrainConfig(max_steps=STEPS, batch_size=8, precision="fp32")
            train(model, train_split, hp, config, 0, CPU, pad, progress=False, hooks=hooks)
            still = [n for n, p in model.named_parameters() if n in trained and torch.equal(p, trained[n])]
            if still or not trained:
                return f"trains nothing, or not {still[:2]}"
        logits = evaluate_model(model, test, KIND, LABELS, 16, CPU, pad).logits
        alone = evaluate_model(model, test, KIND, LABELS, 1, CPU, pad).logits
        if not np.allclose(logits, alone, atol=1e-4):
            return f"padding changes its logits by {np.abs(logits - alone).max():.2g}"
        method.save(model, folder)
        refuse_pickles(folder)
        torch.manual_seed(0)
        loaded = method.load(seeded_copy(base, 0), folder, task, hp)
        again = evaluate_model(loaded, test, KIND, LABELS, 16, CPU, pad).logits
        if not (np.array_equal(logits.argmax(1), again.argmax(1)) and np.allclose(logits, again, atol=1e-4)):
            return f"reloads to other logits (by {np.abs(logits - again).max():.2g})"
        merged = method.merge(loaded)
        if merged is not None:
            after = evaluate_model(merged, test, KIND, LABELS, 16, CPU, pad).logits
            if not np.allclose(after, again, atol=1e-3):
                return f"merges to other logits (by {np.abs(after - again).max():.2g})"
    except Exception as error:  # noqa: BLE001 - what the cell says
        return f"{type(error).__name__}: {error}"
    return None


def test_the_tiny_models_are_one_of_each_family(bases):
    assert {family: model_family(model) for family, model in bases.items()} == {f: f for f in FAMILIES}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", METHODS)
def test_each_cell_of_the_matrix_is_what_the_method_declares(name, family, bases, data, tmp_path):
    method = collect_methods().get(name).method
    problem = probe(method, bases[family], data, tmp_path)
    if family in method.unsupported:
        assert problem is not None, f"{name} declares {family} unsupported, but it works there"
    else:
        assert problem is None, f"{name} on {family}: {problem}"
