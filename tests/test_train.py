"""The training loop: its batches (every example once per epoch, in length buckets), the hooks
through which a method acts during training, and the checkpoints of a learning curve, which
change nothing in the training, and static shapes for a compiled model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

import peftbench
from conftest import keyword_folder
from fake_plugins import HeadProbe, HeadProbePlugin, MethodsPlugin
from peftbench.batching import StaticShapes, TokenizedSplit, eval_batches
from peftbench.evaluation import evaluate_model
from peftbench.models import classification_head, load_model, resolve_model
from peftbench.settings import TrainConfig
from peftbench.tasks.classification import Classification
from peftbench.train import Checkpoints, StepHooks, checkpoint_steps, plan_batches, train

CPU = torch.device("cpu")
HP = {"learning_rate": 1e-3, "weight_decay": 0.01, "warmup_ratio": 0.2}


def random_split(count: int, seed: int = 0) -> TokenizedSplit:
    rng = np.random.default_rng(seed)
    return TokenizedSplit(
        [np.arange(rng.integers(1, 80)) for _ in range(count)], np.zeros(count, dtype=np.int64)
    )


def test_every_example_is_trained_once_per_epoch_in_length_buckets():
    split = random_split(1000)
    batches = plan_batches(split, TrainConfig(epochs=2, batch_size=16), seed=3)
    assert len(batches) == 2 * 63
    first_epoch = np.concatenate(batches[:63])
    assert sorted(first_epoch.tolist()) == list(range(1000))
    assert (
        plan_batches(split, TrainConfig(epochs=2, batch_size=16), seed=3)[5].tolist() == batches[5].tolist()
    )

    def efficiency(groups):
        real = sum(split.lengths[g].sum() for g in groups)
        return real / sum(len(g) * split.lengths[g].max() for g in groups)

    shuffled = np.array_split(np.random.default_rng(0).permutation(1000), 63)
    assert efficiency(batches[:63]) > 0.9 > efficiency(shuffled)
    assert efficiency(eval_batches(split, 16)) >= efficiency(batches[:63])  # fully sorted: the least padding


class Hooked(HeadProbe):
    """A head probe that watches the training context: the plan, each step, the loss term."""

    name = "hooked"
    description = "Records what the training hooks give it; adds a constant 10 to every step's loss."

    def __init__(self):
        self.plans, self.steps = [], []

    def prepare(self, model, task, hp):
        self.plans.append(task.plan)
        return super().prepare(model, task, hp)

    def extra_loss(self, model):
        return torch.tensor(10.0)

    def after_step(self, model, step):
        head = classification_head(model)
        self.steps.append((step, head.weight.grad is not None and bool(head.weight.grad.abs().sum() > 0)))


def test_methods_see_the_plan_every_step_and_add_to_the_loss(keyword_dataset, tmp_path, register_plugin):
    hooked = Hooked()
    register_plugin(MethodsPlugin(hooked))
    register_plugin(HeadProbePlugin())  # the same method without hooks, to compare with
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_dataset), methods="hooked,head_probe", out=tmp_path,
        batch_size=32, epochs=1.5, log_every=1, references=False, progress=False,
    )  # fmt: skip
    records = {r.method: r for r in board.records}
    (plan,) = hooked.plans
    assert plan.device == "cpu" and (plan.epochs, plan.batch_size) == (1.5, 32)
    assert plan.steps_per_epoch == 8 and plan.total_steps == 12 == records["hooked"].costs["train_steps"]
    assert hooked.steps == [(step, True) for step in range(1, 13)]  # from 1, gradients still there
    # The constant term changes no gradient: the same training, every logged loss 10 higher.
    assert records["hooked"].metrics["final_train_loss"] == pytest.approx(
        records["head_probe"].metrics["final_train_loss"] + 10.0, abs=1e-4
    )
    assert records["hooked"].predictions == records["head_probe"].predictions


def test_a_method_without_hooks_adds_nothing_to_the_loop():
    from peftbench.plugins import RegisteredMethod
    from peftbench.runs.runner import _step_hooks
    from peftbench.runs.spec import RunSpec

    spec = RunSpec(RegisteredMethod(HeadProbe(), "tests"), {}, 0, "x")
    assert _step_hooks(spec, torch.nn.Linear(1, 1)) == StepHooks()


@pytest.mark.parametrize(
    ("total", "count", "steps"),
    [
        (100, 5, [20, 40, 60, 80, 100]),
        (12, 5, [3, 5, 8, 10, 12]),
        (7, 1, [7]),
        (3, 5, [1, 2, 3]),  # fewer steps than points: each step once
        (1, 5, [1]),
        (10, 0, []),
        (0, 5, []),
    ],
)
def test_checkpoint_steps_are_evenly_spaced_and_end_at_the_last_step(total, count, steps):
    assert checkpoint_steps(total, count) == steps


class Pooled(nn.Module):
    """A tiny classifier with dropout, so its training draws from the random generator."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.drop, self.head = nn.Embedding(100, 8), nn.Dropout(0.5), nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.head(self.drop(self.embed(input_ids)).mean(1)))


def test_checkpoints_change_nothing_in_training_and_their_time_is_not_training_time(monkeypatch):
    split = TokenizedSplit(
        [np.arange(n % 7 + 2) for n in range(64)], np.arange(64, dtype=np.int64) % 2
    )  # fmt: skip
    config = TrainConfig(batch_size=8, log_every=1, precision="fp32")
    hp = {"learning_rate": 0.01, "weight_decay": 0.0, "warmup_ratio": 0.0}
    clock = SimpleNamespace(now=0.0)  # time passes only inside a checkpoint
    monkeypatch.setattr("peftbench.train.time", SimpleNamespace(perf_counter=lambda: clock.now))
    plain = Pooled()
    untouched = train(plain, split, hp, config, 0, torch.device("cpu"), 0, progress=False)
    seen = []

    def look(step):
        seen.append((step, model.training))
        model.eval()
        torch.rand(100)  # whatever a checkpoint draws, training's random stream stays as it was
        with torch.no_grad():
            model(torch.ones(2, 3, dtype=torch.long), None)
        clock.now += 100.0

    model = Pooled()
    stats = train(
        model, split, hp, config, 0, torch.device("cpu"), 0, False, StepHooks(), Checkpoints({2, 5}, look)
    )
    assert seen == [(2, True), (5, True)] and model.training
    assert stats.loss_history == untouched.loss_history
    for name, value in plain.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name
    assert (stats.seconds, stats.checkpoint_seconds) == (0.0, 200.0)


def test_extra_curve_points_change_nothing_but_the_curve(tmp_path):
    data = keyword_folder(tmp_path / "data", train=96, validation=32, test=32)
    common = dict(
        model="tiny-gpt2", dataset=str(data), methods="lora", batch_size=12, log_every=3, epochs=1,
        checkpoints=1, references=False, progress=False,
    )  # fmt: skip
    (without,) = peftbench.run(**common, out=tmp_path / "without").records  # the default: no extra points
    (curved,) = peftbench.run(**common, out=tmp_path / "curved", curve_points=5).records
    assert curved.run_id == without.run_id  # how many points does not decide the result
    assert curved.predictions == without.predictions and curved.metrics == without.metrics
    assert curved.costs["train_steps"] == 8
    assert [step for step, _ in curved.curves["train_loss"]] == [3, 6, 8]
    assert curved.curves["train_loss"] == without.curves["train_loss"]
    assert curved.curves["train_loss"][-1][1] == curved.metrics["final_train_loss"]
    assert [step for step, _ in curved.curves["validation_accuracy"]] == [2, 4, 5, 7, 8]
    assert curved.curves["validation_accuracy"][-1][1] == curved.metrics["validation_accuracy"]
    assert curved.curves["validation_loss"][-1][1] == curved.metrics["validation_loss"]
    assert [step for step, _ in without.curves["validation_accuracy"]] == [8]  # its one checkpoint
    assert without.curves["validation_accuracy"][-1] == curved.curves["validation_accuracy"][-1]


def token_split(count: int, longest: int, seed: int = 0) -> TokenizedSplit:
    """Random token ids of random lengths (1 to ``longest``) with random binary labels."""
    rng = np.random.default_rng(seed)
    ids = [rng.integers(0, 1000, rng.integers(1, longest + 1)) for _ in range(count)]
    return TokenizedSplit(ids, rng.integers(0, 2, count))


def gpt2_without_dropout() -> torch.nn.Module:
    """Dropout draws its masks in the shape of the batch, so only without it can differently padded
    batches give the same numbers. The token embeddings (most of tiny GPT-2) stay frozen, for speed."""
    model = load_model(resolve_model("tiny-gpt2"), ("a", "b"), 0, 50256)
    model.transformer.wte.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_static_shapes_train_and_predict_as_padding_to_the_longest_does():
    split = token_split(38, longest=40)  # batches of 16: every epoch ends with one of 6
    config = TrainConfig(epochs=2, batch_size=16, max_length=64, log_every=1, precision="fp32")
    runs = {}
    for static in (False, True):
        model = gpt2_without_dropout()
        stats = train(model, split, HP, config, seed=1, device=CPU, pad_id=50256, progress=False,
                      static_shapes=static)  # fmt: skip
        scored = evaluate_model(model, split, Classification(), ("bad", "good"), 32, CPU, 50256)
        runs[static] = stats, scored, model.state_dict()
    (plain, plain_eval, plain_state), (static, static_eval, static_state) = runs[False], runs[True]
    assert [s for s, _ in static.loss_history] == [s for s, _ in plain.loss_history] == list(range(1, 7))
    assert [loss for _, loss in static.loss_history] == pytest.approx(
        [loss for _, loss in plain.loss_history], abs=1e-5
    )
    assert np.array_equal(static_eval.predictions, plain_eval.predictions)
    assert np.abs(static_eval.logits - plain_eval.logits).max() < 1e-4
    assert all(torch.allclose(static_state[k], plain_state[k], atol=1e-5) for k in plain_state)
    # Counts stay real examples and tokens; only what the model processed grows.
    assert (static.samples, static.tokens) == (plain.samples, plain.tokens) == (76, split.lengths.sum() * 2)
    shapes = StaticShapes.for_lengths(64, 16)
    batches = plan_batches(split, config, seed=1)
    assert static.padded_tokens == sum(16 * shapes.width(split.lengths[b].max()) for b in batches)
    assert static.padding_efficiency < plain.padding_efficiency


class MeanPool(torch.nn.Module):
    """A classifier that dynamo traces in moments: embeddings averaged over the attention mask."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(1000, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1)
        return SequenceClassifierOutput(logits=self.head(pooled))


@pytest.fixture
def counted_compiles(monkeypatch):
    """``torch.compile`` through a backend that records each graph it is given (the shape of its
    token-id input) and runs it eagerly, so a test sees every (re)compilation in seconds."""
    calls, graphs = [], []
    real = torch.compile

    def backend(graph, inputs):
        graphs.append(next(tuple(t.shape) for t in inputs if t.dtype == torch.int64 and t.dim() == 2))
        return graph.forward

    def compile_counted(model, **options):
        calls.append(options)
        return real(model, **options, backend=backend)

    monkeypatch.setattr(torch, "compile", compile_counted)
    return calls, graphs


def compiled_run(model, split, config, seed=0):
    return train(model, split, HP, config, seed, CPU, pad_id=0, progress=False)


def test_a_compiled_run_compiles_once_per_width_it_meets(counted_compiles):
    calls, graphs = counted_compiles
    split = token_split(150, longest=100)
    config = TrainConfig(epochs=3, batch_size=16, max_length=128, log_every=1, precision="fp32", compile=True)
    torch.manual_seed(0)
    stats = compiled_run(MeanPool(), split, config)
    assert stats.steps == 30 and calls == [{"dynamic": False}]
    shapes = StaticShapes.for_lengths(128, 16)
    met = {shapes.width(split.lengths[b].max()) for b in plan_batches(split, config, seed=0)}
    assert met == {16, 32, 64, 128}  # every width, and short batches at each epoch's end
    assert sorted(graphs) == [(16, width) for width in sorted(met)]
    # The next run starts from clean compile caches: again one graph per width, no more.
    graphs.clear()
    compiled_run(MeanPool(), split, config, seed=1)
    assert sorted(graphs) == [(16, width) for width in sorted(met)]


def test_a_compiled_run_trains_as_the_uncompiled_one(counted_compiles):
    split = token_split(40, longest=30)
    config = TrainConfig(epochs=2, batch_size=16, max_length=32, log_every=1, precision="fp32")
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        model = MeanPool()
        stats = compiled_run(model, split, config.model_copy(update={"compile": compile}))
        results.append((stats.loss_history, model.head.weight.detach().clone()))
    (plain_losses, plain_head), (compiled_losses, compiled_head) = results
    losses = [loss for _, loss in plain_losses]
    assert [loss for _, loss in compiled_losses] == pytest.approx(losses, abs=1e-6)
    assert torch.allclose(compiled_head, plain_head, atol=1e-6)


@pytest.mark.slow
def test_tiny_gpt2_compiles_to_one_graph_per_width(counted_compiles):
    """No graph breaks in GPT-2: one whole graph per width, as CUDA graphs need."""
    _, graphs = counted_compiles
    split = token_split(70, longest=60)
    config = TrainConfig(epochs=2, batch_size=16, max_length=64, log_every=1, precision="fp32", compile=True)
    train(gpt2_without_dropout(), split, HP, config, 0, CPU, pad_id=50256, progress=False)
    assert sorted(graphs) == [(16, 16), (16, 32), (16, 64)]
