"""Hyper-parameter tuning: chosen on validation only, then every seed on test."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import model_validator

import peftbench
from conftest import keyword_folder
from fake_plugins import HeadProbe, MethodsPlugin
from peftbench.cli import main
from peftbench.errors import PeftbenchError
from peftbench.methods.hyperparameters import TrainingHyperparameters
from peftbench.methods.lora import Lora
from peftbench.plugins import collect_methods

# An exhaustive search on one seed, without extension, keeping the end of training: 0.3's protocol
# (the search strategies themselves are tested in test_search.py).
SWEEP = dict(
    model="tiny-gpt2", methods=["lora", "ia3", "prefix_tuning"], epochs=4, tune=True, progress=False,
    search="grid", tune_seeds=1, extension_limit=0, checkpoints=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    data = keyword_folder(root / "data", train=96, validation=48, test=48)
    return peftbench.run(dataset=str(data), out=root / "runs", seeds=[0, 1, 2], **SWEEP), root


def test_tuned_three_seed_sweep_on_tiny_gpt2(tuned):
    board, _ = tuned
    frame = board.to_frame().set_index("method")
    assert set(frame.index) == {"lora", "ia3", "prefix_tuning", "head_only", "baseline", "majority"}
    assert (frame["seeds"] == 3).all()
    for method in ("lora", "ia3", "prefix_tuning", "head_only"):
        assert frame.loc[method, "tuned"].startswith("learning_rate=")
        assert not np.isnan(frame.loc[method, "score_ci95"])
        assert 0 <= frame.loc[method, "p_vs_baseline"] <= 1
    assert frame["tied_for_best"].any()
    finals = [r for r in board.records if r.stage == "final" and r.method == "lora"]
    tunes = [r for r in board.records if r.stage == "tune" and r.method == "lora"]
    assert len(finals) == 3 and len(tunes) == len(Lora.search_space["learning_rate"])
    assert {r.seed for r in tunes} == {0}
    chosen = finals[0].tuning["chosen"]["learning_rate"]
    assert all(r.hyperparameters["learning_rate"] == chosen for r in finals)
    best = max(tunes, key=lambda r: r.metrics["validation_accuracy"])
    assert best.metrics["validation_accuracy"] == max(
        c["validation_accuracy"] for c in finals[0].tuning["candidates"]
    )
    for record in tunes:  # candidates are never scored on test
        assert "accuracy" not in record.metrics and record.predictions == [] and record.adapter_path is None


def test_scrambling_test_labels_does_not_change_the_choice(tuned, tmp_path):
    board, _ = tuned
    scrambled = peftbench.run(
        dataset=str(keyword_folder(tmp_path / "data", train=96, validation=48, test=48, scramble_test=True)),
        out=tmp_path / "runs",
        seeds=[0],
        **SWEEP,
    )

    def choices(b):
        return {r.method: r.tuning for r in b.records if r.stage == "final" and r.seed == 0 and r.tuning}

    original, other = choices(board), choices(scrambled)
    assert set(original) == {"lora", "ia3", "prefix_tuning", "head_only"}
    for method, tuning in original.items():
        assert other[method]["chosen"] == tuning["chosen"]
        mine = [c["validation_accuracy"] for c in tuning["candidates"]]
        assert [c["validation_accuracy"] for c in other[method]["candidates"]] == mine


class Ordered(HeadProbe):
    """Two hyper-parameters with a rule between them, and a search space that breaks it."""

    name = "ordered"
    description = "low must stay below high."
    search_space = {"low": [1, 2]}

    class Hyperparameters(TrainingHyperparameters):
        low: int = 1
        high: int = 3

        @model_validator(mode="after")
        def _ordered(self):
            if self.low >= self.high:
                raise ValueError(f"low={self.low} must be below high={self.high}")
            return self


def test_every_tuning_candidate_is_checked_before_any_training(tmp_path, capsys, register_plugin):
    register_plugin(MethodsPlugin(Ordered()))
    data = keyword_folder(tmp_path / "data", train=64, validation=16, test=16)
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--methods", "lora,ordered", "--tune",
            "--hp", "ordered.high=2", "--max-steps", "1", "--out", str(tmp_path / "runs")]  # fmt: skip
    assert main(args) == 2  # --hp ordered.high=2 is fine alone, but not with the candidate low=2
    assert capsys.readouterr().err == "peftbench: error: method 'ordered': low=2 must be below high=2\n"
    assert not (tmp_path / "runs" / "records").exists()  # lora's candidates did not train first


def test_a_search_space_that_breaks_a_rule_is_refused_when_the_method_registers(register_plugin):
    broken = type("Broken", (Ordered,), {"search_space": {"low": [1, 5], "high": [3, 9]}})()
    register_plugin(MethodsPlugin(broken), "peftbench-ordered 1.0")
    with pytest.raises(PeftbenchError) as error:
        collect_methods()
    assert (
        "registered method 'ordered', which peftbench cannot run: method 'ordered': low=5 must be below"
        in str(error.value)
    )


def test_the_best_candidate_follows_the_metric_direction_and_a_missing_loss_never_wins_a_tie():
    from peftbench.runs.selection import Criterion, best

    def row(score, loss, status="complete"):
        return {"status": status, "validation_mse": score, "validation_loss": loss, "hyperparameters": {}}

    def pick(rows, higher_is_better):
        criterion = Criterion("mse", higher_is_better)
        return best([r for r in rows if r["status"] == "complete"], criterion.score)

    rows = [row(0.30, 0.30), row(0.10, None), row(0.10, 0.20), row(0.05, 0.1, status="failed")]
    assert pick(rows, higher_is_better=False) is rows[2]  # lowest; tie: lower loss
    assert pick(rows, higher_is_better=True) is rows[0]
    tie = [row(0.5, None), row(0.5, 0.9), row(0.5, 0.9)]
    assert pick(tie, higher_is_better=True) is tie[1]  # then the earlier one
    assert pick([row(float("nan"), 0.1)], True) is None
    assert Criterion("mse", False).name == "validation MSE" and Criterion().key == "validation_accuracy"
