"""How a method's parameters are optimised: the default groups (no weight decay on biases and
normalisation weights), groups a method sets (LoRA+), a method's own optimizer (LoRA-FA), and the
checks on what a method returns."""

from __future__ import annotations

import re

import pytest
import torch
from peft.optimizers.lorafa import LoraFAOptimizer

from conftest import keyword_folder
from peftbench import ParameterGroup, PeftbenchError, parameter_groups
from peftbench.batching import tokenize_split
from peftbench.data import DatasetSpec, load_splits
from peftbench.methods.optim import build_optimizer, is_normalisation
from peftbench.models import load_model, load_tokenizer, resolve_model
from peftbench.plugins import collect_methods
from peftbench.settings import TrainConfig
from peftbench.train import StepHooks, train

CPU = torch.device("cpu")
LABELS = ("bad", "good")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    splits = load_splits(DatasetSpec(str(keyword_folder(tmp_path_factory.mktemp("kw"), 64, 8, 8))))
    return tokenize_split(load_tokenizer(resolve_model("tiny-gpt2")), splits.train, 32)


def fresh(alias: str, method: str | None = None, **overrides):
    """A tiny model of ``alias`` (seed 0), prepared by ``method`` if given, and the method's hp."""
    model = load_model(resolve_model(alias), LABELS, 0, 50256)
    if method is None:
        return model, {"learning_rate": 1e-2, "weight_decay": 0.1, "warmup_ratio": 0.0}
    entry = collect_methods().get(method).method
    hp = entry.hyperparameters(overrides)
    torch.manual_seed(0)
    return entry.prepare(model, None, hp), hp


def steps(model, hp, split, count, optimizer=None):
    config = TrainConfig(max_steps=count, batch_size=16, precision="fp32", max_grad_norm=1e9)
    train(model, split, hp, config, 0, CPU, 50256, progress=False, hooks=StepHooks(optimizer=optimizer))


@pytest.mark.parametrize(("alias", "norm"), [("tiny-bert", "LayerNorm"), ("tiny-llama", "LlamaRMSNorm")])
def test_default_groups_take_no_weight_decay_on_biases_and_normalisation_weights(alias, norm):
    model, hp = fresh(alias)
    groups = parameter_groups(model, hp)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for g in groups if g.weight_decay == 0.0 for p in g.params}
    norms = {f"{m}.{p}" for m, module in model.named_modules() if is_normalisation(module)
             for p, _ in module.named_parameters(recurse=False)}  # fmt: skip
    assert any(type(module).__name__ == norm for module in model.modules())
    assert exempt == norms | {n for n in names.values() if n.endswith("bias")} and norms
    assert sum(len(g.params) for g in groups) == len(list(model.parameters()))
    assert all(g.weight_decay is None and g.lr_scale == 1.0 for g in groups if g.weight_decay != 0.0)


def test_without_weight_decay_the_default_groups_train_exactly_as_one_adamw_group(split):
    """What peftbench did before groups: one AdamW over every trainable parameter."""
    trained = {}
    for kind in ("groups", "one group"):
        model, hp = fresh("tiny-gpt2", "lora", weight_decay=0.0)
        params = [p for p in model.parameters() if p.requires_grad]
        adamw = torch.optim.AdamW(params, lr=hp["learning_rate"], weight_decay=0.0, foreach=True)
        steps(model, hp, split, 3, None if kind == "groups" else lambda adamw=adamw: adamw)
        trained[kind] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.equal(trained["groups"][n], trained["one group"][n]) for n in trained["groups"])


def test_full_fine_tuning_decays_weights_but_not_biases_or_layer_norms(split):
    """One step from the same start: with and without weight decay, the exempt parameters end equal."""
    after = {}
    for decay in (0.0, 0.5):
        model, hp = fresh("tiny-bert", "full_finetune", weight_decay=decay, warmup_ratio=0.0)
        steps(model, hp, split, 1)
        after[decay] = dict(model.named_parameters())
    exempt = {n for n in after[0.0] if n.endswith("bias") or "LayerNorm" in n}
    for name, parameter in after[0.0].items():
        same = torch.equal(parameter, after[0.5][name])
        assert same == (name in exempt) or not parameter.abs().sum(), name


def test_lora_plus_moves_b_ratio_times_as_far_as_a(split):
    """Adam's first step moves each entry by its learning rate whatever its gradient (less where the
    gradient is as small as Adam's epsilon): B's by ratio x A's."""
    model, hp = fresh("tiny-bert", "lora_plus", ratio=4.0, warmup_ratio=0.0, lora_dropout=0.0)
    with torch.no_grad():  # B starts at zero, which would leave A without a gradient at the first step
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    method = collect_methods().get("lora_plus").method
    steps(model, hp, split, 1, lambda: method.optimizer(model, hp))
    moved = {n: (p.detach() - before[n]).abs() for n, p in model.named_parameters() if n in before}
    a = torch.cat([m[m > 0] for n, m in moved.items() if "lora_A" in n])
    b = torch.cat([m[m > 0] for n, m in moved.items() if "lora_B" in n])
    rate = hp["learning_rate"]
    assert a.quantile(0.9).item() == pytest.approx(rate, rel=1e-3)
    assert b.quantile(0.9).item() == pytest.approx(4.0 * rate, rel=1e-3)
    groups = method.optimizer(model, hp)
    b_ids = {id(p) for n, p in model.named_parameters() if "lora_B" in n}
    assert {g.lr_scale for g in groups if {id(p) for p in g.params} & b_ids} == {4.0}


def test_lora_fa_never_changes_a_and_trains_b(split):
    model, hp = fresh("tiny-bert", "lora_fa")
    method = collect_methods().get("lora_fa").method
    a = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
    b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    assert a and not any(model.get_parameter(n).requires_grad for n in a)
    assert isinstance(method.optimizer(model, hp), LoraFAOptimizer)
    steps(model, hp, split, 3, lambda: method.optimizer(model, hp))
    assert all(torch.equal(model.get_parameter(n), value) for n, value in a.items())
    assert all(not torch.equal(model.get_parameter(n), value) for n, value in b.items())


def test_groups_must_hold_every_trainable_parameter_exactly_once():
    model, hp = fresh("tiny-gpt2", "lora")
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = next(p for p in model.parameters() if not p.requires_grad)
    cases = {
        "leave out 1 parameter(s) (e.g. base_model.model.score.modules_to_save.default.weight)": [
            ParameterGroup(trainable[:-1])
        ],
        "repeat 1 parameter(s)": [ParameterGroup(trainable), ParameterGroup(trainable[:1])],
        "hold frozen or foreign 1 parameter(s)": [ParameterGroup([*trainable, frozen])],
    }
    for words, groups in cases.items():
        with pytest.raises(PeftbenchError, match=f"parameter groups {re.escape(words)}"):
            build_optimizer(model, hp, CPU, lambda groups=groups: groups)
    with pytest.raises(PeftbenchError, match="returned dict: return a list of peftbench.ParameterGroup"):
        build_optimizer(model, hp, CPU, lambda: {})
    optimizer = build_optimizer(model, hp, CPU, lambda: [ParameterGroup(trainable, 0.5, 0.25)])
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(hp["learning_rate"] / 2, 0.25)]
