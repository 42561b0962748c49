"""The training loop: its batches (every example once per epoch, in length buckets) and the hooks
through which a method acts during training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import peftbench
from fake_plugins import HeadProbe, HeadProbePlugin, MethodsPlugin
from peftbench.batching import TokenizedSplit, eval_batches
from peftbench.models import classification_head
from peftbench.settings import TrainConfig
from peftbench.train import StepHooks, plan_batches


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
