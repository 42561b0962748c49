"""Inference cost: the timing gives figures, merged models are the base model again and predict
like the adapter, methods that cannot merge say so; no assertion on how fast anything is."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from peftbench.batching import TokenizedSplit, collate
from peftbench.inference_cost import THROUGHPUT_BATCH, inference_costs, inference_sample, time_forward
from peftbench.leaderboard.report import legend
from peftbench.methods.base import TaskInfo, TrainingPlan
from peftbench.methods.reference import MajorityClass
from peftbench.plugins import collect_methods
from peftbench.tasks.metrics import ACCURACY

CPU = torch.device("cpu")
TASK = TaskInfo(2, ("bad", "good"), (10, 10), TrainingPlan(40, 10, 4.0, 8, "cpu"))
# All but lora and ia3: peftbench-peft-extras.
MERGEABLE = [
    "lora", "ia3", "adalora", "dora", "loha", "lokr", "vera", "rslora", "pissa", "olora", "lora_plus",
    "lora_fa", "oft", "boft", "hra", "road", "vblora", "randlora", "fourierft", "c3a", "shira", "delora",
    "gralora", "hira", "miss", "ln_tuning",
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """Timed calls on a shared machine: two processes that each use every core slow both ten-fold."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_bert(seed: int = 0) -> transformers.BertForSequenceClassification:
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=2, pad_token_id=0, attn_implementation="eager",  # attention as matmuls FLOPs count
    )  # fmt: skip
    torch.manual_seed(seed)
    return transformers.BertForSequenceClassification(config).eval()


def split(count: int = 24) -> TokenizedSplit:
    rng = np.random.default_rng(3)
    ids = [rng.integers(1, 100, size=rng.integers(3, 12)) for _ in range(count)]
    return TokenizedSplit(ids, rng.integers(0, 2, size=count))


def prepared(name: str) -> tuple[torch.nn.Module, object]:
    """``name`` prepared on a tiny BERT, its trainable weights moved off their initialisation (a
    fresh LoRA adds nothing: its B is zero), as training would."""
    registry = collect_methods()
    if name not in registry.names():
        pytest.fail(f"method {name} not installed: run scripts/setup.sh")
    method = registry.get(name).method
    torch.manual_seed(1)
    model = method.prepare(tiny_bert(), TASK, method.hyperparameters())
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.2 * torch.randn_like(parameter))
    return model.eval(), method


def logits(model: torch.nn.Module, data: TokenizedSplit) -> torch.Tensor:
    batch = collate(data, np.arange(len(data)), pad_id=0)
    batch.pop("labels")
    with torch.inference_mode():
        return model(**batch).logits


def forward_flops(model: torch.nn.Module, data: TokenizedSplit) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        logits(model, data)
    return counter.get_total_flops()


def test_the_timing_gives_positive_finite_figures_for_a_tiny_model():
    latency_ms, throughput = time_forward(tiny_bert(), split(), CPU, pad_id=0)
    assert math.isfinite(latency_ms) and latency_ms > 0
    assert math.isfinite(throughput) and throughput > 0


def test_the_sample_is_fixed_by_the_split_and_always_a_full_batch():
    torch.manual_seed(7)
    np.random.seed(7)
    first = inference_sample(split(24))
    torch.manual_seed(8)
    np.random.seed(8)
    assert np.array_equal(first, inference_sample(split(24)))  # the run's seed plays no part
    assert len(first) == THROUGHPUT_BATCH and set(first) == set(range(24))  # a small split repeats
    large = inference_sample(split(500))
    assert len(large) == THROUGHPUT_BATCH == len(set(large)) and large.max() < 500


@pytest.mark.parametrize("name", MERGEABLE)
def test_a_merged_model_predicts_like_its_adapter_and_is_the_base_model_again(name):
    data = split()
    model, method = prepared(name)
    before = logits(model, data)
    merged = method.merge(model)
    assert merged is not None
    torch.testing.assert_close(logits(merged, data), before, rtol=1e-4, atol=1e-5)
    base = tiny_bert()
    shapes = {key: tuple(value.shape) for key, value in merged.state_dict().items()}
    assert shapes == {key: tuple(value.shape) for key, value in base.state_dict().items()}
    assert forward_flops(merged, data) == forward_flops(base, data)  # costs what the base model costs


def test_methods_that_cannot_merge_say_so_and_prefix_tuning_costs_more_than_the_base():
    data = split()
    for name in ("prompt_tuning", "p_tuning", "prefix_tuning"):  # virtual tokens: nothing to fold in
        model, method = prepared(name)
        assert method.merge(model) is None, name
    prefix = model
    baseline = collect_methods().get("baseline").method
    assert baseline.merge(tiny_bert()) is None  # the default: nothing to merge
    base_flops = forward_flops(tiny_bert(), data)
    assert forward_flops(prefix, data) > base_flops  # attention over the virtual keys and values
    lora, _ = prepared("lora")
    assert forward_flops(lora, data) > base_flops  # unmerged, the adapter's matmuls come on top


def test_costs_have_merged_figures_only_where_the_method_merges_and_none_without_parameters():
    data = split()
    lora, method = prepared("lora")
    costs = inference_costs(lora, method.merge, data, CPU, pad_id=0)
    assert set(costs) == {"latency_ms", "throughput", "merged_latency_ms", "merged_throughput"}
    assert all(math.isfinite(value) and value > 0 for value in costs.values())
    prefix, method = prepared("prefix_tuning")
    assert set(inference_costs(prefix, method.merge, data, CPU, pad_id=0)) == {"latency_ms", "throughput"}
    majority = MajorityClass()
    constant = majority.prepare(None, TASK, {})
    assert inference_costs(constant, majority.merge, data, CPU, pad_id=0) == {}


def test_the_legend_states_the_batch_size_that_is_timed():
    assert f"at batch {THROUGHPUT_BATCH}" in legend([ACCURACY])
