"""Seeds with confidence intervals, paired bootstrap, validation-only tuning, reference rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

import peftbench
from conftest import keyword_rows
from peftbench.leaderboard import Leaderboard
from peftbench.methods.lora import Lora
from peftbench.records import RunRecord
from peftbench.stats import mean_and_ci, paired_bootstrap


def test_confidence_interval_matches_student_t():
    mean, std, half = mean_and_ci([0.80, 0.82, 0.81])
    assert mean == pytest.approx(0.81) and std == pytest.approx(0.01)
    assert half == pytest.approx(4.302653 * 0.01 / np.sqrt(3), rel=1e-6)  # t(0.975, df=2) = 4.302653
    assert half == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3))
    _, _, five = mean_and_ci([0.1, 0.2, 0.3, 0.4, 0.5])
    assert five == pytest.approx(2.776445 * np.std([0.1, 0.2, 0.3, 0.4, 0.5], ddof=1) / np.sqrt(5), rel=1e-6)
    single = mean_and_ci([0.7])
    assert single[0] == 0.7 and np.isnan(single[1]) and np.isnan(single[2])


def test_paired_bootstrap_is_deterministic_and_sensible():
    rng = np.random.default_rng(0)
    a = (rng.random(500) < 0.85).astype(float)
    b = np.where(rng.random(500) < 0.2, 1 - a, a)  # b flips 20% of a's outcomes
    first, again = paired_bootstrap(a, b), paired_bootstrap(a, b)
    assert first == again
    assert first.difference == pytest.approx(a.mean() - b.mean())
    assert first.ci_low <= first.difference <= first.ci_high
    assert paired_bootstrap(a, a).p_value == 1.0
    clearly = paired_bootstrap(np.ones(300), (np.arange(300) % 2).astype(float))
    assert clearly.p_value < 0.001 and clearly.ci_low > 0.4
    noisy = (rng.random(500) < 0.83).astype(float)  # independent, nearly as good: a moderate p
    moderate = paired_bootstrap(a, noisy)
    assert 0.01 < moderate.p_value < 1 and moderate == paired_bootstrap(a, noisy, seed=0)
    assert paired_bootstrap(a, noisy, seed=1).p_value != moderate.p_value  # the seed is what fixes it


def synthetic(method, seed, correct, role="method"):
    references = [i % 2 for i in range(len(correct))]
    predictions = [r if c else 1 - r for r, c in zip(references, correct, strict=True)]
    return RunRecord(
        run_id=f"{method}-{seed}", status="complete", model="m", dataset="d", method=method, seed=seed,
        role=role, metrics={"accuracy": float(np.mean(correct)), "macro_f1": 0.0, "loss": 0.0},
        predictions=predictions, references=references, reload={"predictions_identical": True},
    )  # fmt: skip


def test_ties_for_best_and_p_values_against_the_baseline():
    rng = np.random.default_rng(0)
    strong = rng.random(400) < 0.85
    near = strong.copy()
    near[:4] = ~near[:4]  # differs from the best on 4 examples of 400
    weak = rng.random(400) < 0.6
    chance = rng.random(400) < 0.5
    records = [synthetic("strong", s, strong) for s in range(3)] + [
        synthetic("near", s, near) for s in range(3)
    ]
    records += [synthetic("weak", s, weak) for s in range(3)]
    records += [synthetic("baseline", s, chance, role="baseline") for s in range(3)]
    frame = Leaderboard(records).to_frame().set_index("method")
    assert frame.loc["strong", "tied_for_best"] and frame.loc["strong", "p_vs_best"] == 1.0
    assert frame.loc["near", "tied_for_best"] and frame.loc["near", "p_vs_best"] > 0.05
    assert not frame.loc["weak", "tied_for_best"] and frame.loc["weak", "p_vs_best"] < 0.001
    assert frame.loc["strong", "p_vs_baseline"] < 0.001
    assert frame.loc["strong", "accuracy_per_seed"] == {0: strong.mean(), 1: strong.mean(), 2: strong.mean()}
    assert frame.loc["strong", "accuracy_ci95"] == 0.0  # identical seeds: no spread
    markdown = Leaderboard(records).to_markdown()
    assert "★" in markdown and "(p<0.001)" in markdown


def keyword_folder(path, scramble_test=False):
    path.mkdir()
    for split, count, seed in (("train", 96, 0), ("validation", 48, 1), ("test", 48, 2)):
        frame = pd.DataFrame(keyword_rows(count, seed))
        if split == "test" and scramble_test:
            frame["label"] = np.random.default_rng(5).permutation(frame["label"].to_numpy())
        frame.to_parquet(path / f"{split}.parquet")
    return path


SWEEP = dict(model="tiny-gpt2", methods=["lora", "ia3", "prefix_tuning"], epochs=4, tune=True, progress=False)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    data = keyword_folder(root / "data")
    return peftbench.run(dataset=str(data), out=root / "runs", seeds=[0, 1, 2], **SWEEP), root


def test_tuned_three_seed_sweep_on_tiny_gpt2(tuned):
    board, _ = tuned
    frame = board.to_frame().set_index("method")
    assert set(frame.index) == {"lora", "ia3", "prefix_tuning", "head_only", "baseline", "majority"}
    assert (frame["seeds"] == 3).all()
    for method in ("lora", "ia3", "prefix_tuning", "head_only"):
        assert frame.loc[method, "tuned"].startswith("learning_rate=")
        assert not np.isnan(frame.loc[method, "accuracy_ci95"])
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
        dataset=str(keyword_folder(tmp_path / "data", scramble_test=True)),
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


def test_full_finetuning_is_an_opt_in_reference_row(tmp_path):
    data = keyword_folder(tmp_path / "data")
    board = peftbench.run(model="tiny-gpt2", dataset=str(data), methods="full_finetune", out=tmp_path / "r",
                          max_steps=2, progress=False)  # fmt: skip
    record = next(r for r in board.records if r.method == "full_finetune")
    assert record.status == "complete" and record.role == "reference"
    assert record.costs["trainable_params"] == record.costs["total_params"]
    assert record.reload["predictions_identical"]
    assert "full_finetune" not in {r.method for r in peftbench.run(
        model="tiny-gpt2", dataset=str(data), methods="lora", out=tmp_path / "s", max_steps=1, progress=False
    ).records}  # fmt: skip
