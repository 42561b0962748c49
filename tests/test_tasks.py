"""Kinds of task: registered through ``register_tasks`` like a plugin's, detected from the data or
named, each with its labels, loss, metrics and constant reference; and a new kind (multi-label) as
one module plus a registration, run end to end."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import multilabel_task
import peftbench
from conftest import WORDS, keyword_folder, mirror
from peftbench.cli import main
from peftbench.data import DatasetSpec, load_splits
from peftbench.errors import PeftbenchError
from peftbench.plugins import DEFAULT_PLUGINS, default_plugin_manager
from peftbench.records import read_records
from peftbench.tasks import PAD_LABEL, Task
from peftbench.tasks.metrics import ACCURACY, draw_counts
from peftbench.tasks.registry import collect_tasks


def write_splits(folder: Path, make_row, sizes=(("train", 80), ("validation", 24), ("test", 24))) -> Path:
    """A parquet folder whose rows come from ``make_row(rng)``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in sizes:
        rng = random.Random(split)
        pd.DataFrame([make_row(rng) for _ in range(count)]).to_parquet(folder / f"{split}.parquet")
    return folder


def words(rng: random.Random, count: int = 4) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def similarity_row(rng: random.Random) -> dict:
    """Two texts whose score is the share of the first's words the second repeats (0 to 1)."""
    first = words(rng, 4).split()
    shared = rng.randint(0, 4)
    return {"sentence1": " ".join(first), "sentence2": " ".join(first[:shared] + [rng.choice(WORDS)]),
            "score": shared / 4 + rng.random() / 100}  # fmt: skip


def test_the_built_in_kinds_arrive_through_the_register_tasks_hook():
    manager = default_plugin_manager()
    implementers = {impl.plugin_name for impl in manager.hook.register_tasks.get_hookimpls()}
    assert {name for name in DEFAULT_PLUGINS if ".tasks." in name} <= implementers
    registry = collect_tasks()
    assert registry.names()[:3] == ["classification", "pair_classification", "regression"]
    assert all(entry.source == "built-in" for entry in registry.entries()[:3])
    with pytest.raises(PeftbenchError, match="unknown task 'ranking'; known tasks: classification, pair"):
        registry.get("ranking")


def test_the_mirrored_pair_and_regression_datasets_are_detected():
    mirror()
    rte = load_splits(DatasetSpec("glue", "rte"))
    assert (rte.task.name, rte.task.primary_metric, rte.text_columns) == (
        "pair_classification", "accuracy", ("sentence1", "sentence2"),
    )  # fmt: skip
    assert "the test split has no labels and was not used" in rte.notes and rte.train.second is not None
    stsb = load_splits(DatasetSpec("stsb"))
    assert (stsb.task.name, stsb.task.primary_metric, stsb.label_names, stsb.num_labels) == (
        "regression", "spearman", ("score",), 1,
    )  # fmt: skip
    assert (
        stsb.train.labels.dtype == np.float64 and 0 <= stsb.train.labels.min() < stsb.train.labels.max() <= 1
    )


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (("premise", "hypothesis", "label"), ("premise", "hypothesis")),
        (("question", "sentence", "label"), ("question", "sentence")),
        (("question1", "question2", "label"), ("question1", "question2")),
        (("text", "label"), ("text",)),
    ],
)
def test_common_pairs_of_columns_are_detected(tmp_path, columns, expected):
    def row(rng):
        return {**{name: words(rng) for name in columns[:-1]}, "label": rng.randint(0, 1)}

    data = load_splits(DatasetSpec(str(write_splits(tmp_path / "d", row))))
    kind = "pair_classification" if len(expected) == 2 else "classification"
    assert data.text_columns == expected and data.task.name == kind


def test_text_columns_can_be_named_and_a_single_text_kind_reads_one_of_a_pair(tmp_path):
    folder = write_splits(
        tmp_path / "d", lambda rng: {"a": words(rng), "b": words(rng), "label": rng.randint(0, 1)}
    )
    named = load_splits(DatasetSpec(str(folder), text_column="b,a"))
    assert named.text_columns == ("b", "a") and named.task.name == "pair_classification"
    assert named.train.texts[0] != load_splits(DatasetSpec(str(folder), text_column="a,b")).train.texts[0]
    with pytest.raises(PeftbenchError, match="name one text column, or two for a pair"):
        load_splits(DatasetSpec(str(folder), text_column="a,b,label"))
    with pytest.raises(PeftbenchError, match="has no text column 'c'"):
        load_splits(DatasetSpec(str(folder), text_column="a,c"))
    with pytest.raises(PeftbenchError, match="task 'classification' reads 1 text column"):
        load_splits(DatasetSpec(str(folder), text_column="a,b", task="classification"))


def test_a_float_label_column_is_a_regression_and_integer_scores_can_be_one(tmp_path):
    data = load_splits(DatasetSpec(str(write_splits(tmp_path / "sts", similarity_row))))
    assert (data.task.name, data.label_names, data.text_columns) == (
        "regression",
        ("score",),
        ("sentence1", "sentence2"),
    )
    stars = write_splits(tmp_path / "stars", lambda rng: {"text": words(rng), "label": rng.randint(1, 5)})
    assert load_splits(DatasetSpec(str(stars))).task.name == "classification"
    forced = load_splits(DatasetSpec(str(stars), task="regression", metric="pearson"))
    assert forced.task.name == "regression" and forced.task.primary_metric == "pearson"
    assert forced.train.labels.dtype == np.float64 and set(forced.train.labels) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_labels_that_are_not_finite_are_refused_naming_the_row(tmp_path, capsys):
    folder = write_splits(tmp_path / "sts", similarity_row)
    frame = pd.read_parquet(folder / "train.parquet")
    frame.loc[17, "score"] = math.inf
    frame.to_parquet(folder / "train.parquet")
    with pytest.raises(PeftbenchError) as refused:
        load_splits(DatasetSpec(str(folder)))
    assert str(refused.value) == (
        f"dataset '{folder}': row 17 of the train split has label inf (not a finite number; 1 such rows): "
        "fix or drop them"
    )
    assert main(["run", "--dataset", str(folder), "--model", "tiny-gpt2", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "o" / "records").exists()


def test_a_split_whose_labels_are_all_missing_is_unlabelled(tmp_path):
    folder = write_splits(tmp_path / "sts", similarity_row)
    test = pd.read_parquet(folder / "test.parquet")
    test["score"] = None
    test.to_parquet(folder / "test.parquet")
    data = load_splits(DatasetSpec(str(folder)))
    assert data.notes[:2] == [
        "the test split has no labels and was not used",
        "the dataset's validation split serves as test",
    ]
    assert len(data.test) == 24 and np.isfinite(data.test.labels).all()


def test_metric_must_be_one_the_task_has_and_the_refusal_lists_them(tmp_path, capsys):
    emotions = keyword_folder(
        tmp_path / "three", labels=("sad", "joy", "fear"), train=60, validation=12, test=12
    )
    assert load_splits(DatasetSpec(str(emotions), metric="mcc")).task.primary_metric == "mcc"
    with pytest.raises(PeftbenchError) as refused:
        load_splits(DatasetSpec(str(emotions), metric="f1"))  # the positive class: two classes only
    assert (
        str(refused.value) == "unknown metric 'f1' for classification; known metrics: accuracy, macro_f1, mcc"
    )
    sts = write_splits(tmp_path / "sts", similarity_row)
    args = [
        "run",
        "--dataset",
        str(sts),
        "--model",
        "tiny-gpt2",
        "--metric",
        "accuracy",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "peftbench: error: unknown metric 'accuracy' for regression; known metrics: spearman, pearson, mse\n"
    )


def test_losses_ignore_the_filler_rows_of_a_static_batch():
    logits = torch.tensor([[0.2, -0.1], [1.5, 0.3], [9.0, 9.0]])
    classes = torch.tensor([1, 0, PAD_LABEL])
    loss = collect_tasks().get("classification").loss(logits, classes)
    assert loss == pytest.approx(F.cross_entropy(logits[:2], classes[:2]).item())
    values = torch.tensor([0.5, 0.25, math.nan])
    loss = collect_tasks().get("regression").loss(logits[:, :1], values)
    assert loss.item() == pytest.approx(((0.2 - 0.5) ** 2 + (1.5 - 0.25) ** 2) / 2)  # mean squared error


def test_constant_references_are_the_majority_class_and_the_training_mean():
    tasks = collect_tasks()
    prior = tasks.get("classification").constant_outputs(np.array([0, 1, 1, 1]), ("a", "b"))
    assert prior == pytest.approx((math.log(2 / 6), math.log(4 / 6)))  # add-one smoothed log prior
    assert tasks.get("regression").constant_outputs(np.array([0.2, 0.4, 0.9]), ("score",)) == pytest.approx(
        (0.5,)
    )
    assert tasks.get("regression").predict(np.array([[0.3], [0.7]])).tolist() == [0.3, 0.7]


def test_a_pair_regression_sweep_records_its_metric_and_the_training_mean_row(tmp_path):
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(write_splits(tmp_path / "sts", similarity_row)), methods=["lora"],
        max_steps=3, out=tmp_path / "runs", progress=False, measure_inference=False,
    )  # fmt: skip
    records = {r.method: r for r in read_records(tmp_path / "runs")}
    assert set(records) == {"baseline", "train_mean", "head_only", "lora"}  # no majority class
    lora = records["lora"]
    assert (lora.task, lora.metric, lora.higher_is_better) == ("regression", "spearman", True)
    assert {"spearman", "pearson", "mse", "validation_spearman"} <= set(lora.metrics)
    assert lora.reload["predictions_identical"] and all(isinstance(p, float) for p in lora.predictions)
    assert "validation_spearman" in lora.curves
    assert lora.metrics["validation_standard_error"] > 0  # by resampling: Spearman is not a mean
    assert not pd.isna(board.to_frame().set_index("method").loc["lora", "still_improving"])  # judged
    mean = records["train_mean"]
    assert len(set(mean.predictions)) == 1 and mean.metrics["mse"] > 0
    frame = board.to_frame().set_index("method")
    assert (
        frame.loc["lora", "score"] == lora.metrics["spearman"] and frame.loc["lora", "metric"] == "spearman"
    )
    assert "Spearman ρ (95% CI)" in board.to_markdown()


def test_a_method_asked_for_that_does_not_apply_is_refused_before_training(tmp_path, capsys):
    args = ["run", "--dataset", str(write_splits(tmp_path / "sts", similarity_row)), "--model", "tiny-gpt2",
            "--methods", "majority", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 2
    assert "method 'majority' does not apply to regression" in capsys.readouterr().err
    assert not (tmp_path / "o" / "records").exists()


def tags_row(rng: random.Random) -> dict:
    """A text and the tags of the words it has among music, scene, story."""
    text = words(rng, rng.randint(2, 6))
    return {"text": text, "labels": [tag for tag in ("music", "scene", "story") if tag in text.split()]}


def test_a_new_kind_of_task_is_one_module_and_a_registration(register_plugin, tmp_path):
    register_plugin(multilabel_task, name="multilabel_task")
    data = load_splits(DatasetSpec(str(write_splits(tmp_path / "tags", tags_row))))
    assert (data.task.name, data.label_names, data.task.primary_metric) == (
        "multi_label", ("music", "scene", "story"), "micro_f1",
    )  # fmt: skip
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(tmp_path / "tags"), methods=["lora"], max_steps=3,
        out=tmp_path / "runs", progress=False, measure_inference=False,
    )  # fmt: skip
    records = {r.method: r for r in read_records(tmp_path / "runs")}
    assert set(records) == {
        "baseline",
        "majority",
        "head_only",
        "lora",
    }  # it predicts classes: a majority row
    assert all(r.status == "complete" and r.reload["predictions_identical"] for r in records.values())
    assert records["lora"].metric == "micro_f1" and "subset_accuracy" in records["lora"].metrics
    assert records["majority"].predictions == [0] * 24  # every tag is rarer than not: none predicted
    assert "micro-F1 % (95% CI)" in board.to_markdown()
    # Its metrics say how the paired bootstrap recomputes them, and that is the library's value.
    rng = np.random.default_rng(0)
    predicted, true = rng.integers(0, 8, 40), rng.integers(0, 8, 40)
    counts = draw_counts(rng.integers(0, 40, size=(5, 40)))
    for metric in multilabel_task.MultiLabel.metrics:
        drawn = [np.repeat(np.arange(40), row.astype(int)) for row in counts]
        expected = [metric.score(predicted[d], true[d]) for d in drawn]
        assert metric.on_resamples(predicted, true, counts) == pytest.approx(expected, abs=1e-12)


class BadTask(Task):
    name = "bad_task"
    description = "A kind whose default metric it does not have."
    metrics = (ACCURACY,)
    default_metric = "spearman"

    def detects(self, feature, values, inputs):
        return False

    def label_encoding(self, feature, values, column):
        raise NotImplementedError

    def loss(self, logits, labels):
        raise NotImplementedError

    def predict(self, logits):
        raise NotImplementedError

    def constant_outputs(self, train_labels, label_names):
        return ()


class BadTaskPlugin:
    @peftbench.hookimpl
    def register_tasks(self, register):
        register(BadTask())


class ClashingTaskPlugin:
    @peftbench.hookimpl
    def register_tasks(self, register):
        task = multilabel_task.MultiLabel()
        task.name = "regression"
        register(task)


def test_the_registry_refuses_a_kind_it_could_not_run_and_a_name_taken(register_plugin):
    register_plugin(BadTaskPlugin(), source="peftbench-bad 0.1")
    with pytest.raises(PeftbenchError) as refused:
        collect_tasks()
    assert str(refused.value).startswith(
        "plugin peftbench-bad 0.1 registered task 'bad_task', which peftbench cannot run: its default_metric "
        "'spearman' is not one of its metrics (accuracy)"
    )


def test_two_kinds_with_one_name_is_an_error_naming_both_sources(register_plugin):
    register_plugin(ClashingTaskPlugin(), source="peftbench-clash 1.0")
    with pytest.raises(
        PeftbenchError,
        match="two tasks are named 'regression': one from built-in, one from peftbench-clash 1.0",
    ):
        collect_tasks()


def test_a_metric_where_lower_is_better_keeps_the_lowest_checkpoint_and_tunes_to_the_lowest(tmp_path):
    """--metric mse: the checkpoint a run keeps and the candidate a search picks are those with the
    lowest validation MSE, as the records' own curves and candidate rows show."""
    peftbench.run(
        model="tiny-gpt2", dataset=str(write_splits(tmp_path / "sts", similarity_row)), methods=["lora"],
        metric="mse", max_steps=8, checkpoints=4, tune=True, tune_seeds=1, seeds=[0], search="grid",
        references=False, out=tmp_path / "runs", progress=False, measure_inference=False,
    )  # fmt: skip
    final = next(r for r in read_records(tmp_path / "runs") if r.stage == "final")
    assert (final.metric, final.higher_is_better) == ("mse", False)
    curve = dict(map(tuple, final.curves["validation_mse"]))
    assert final.training["kept_step"] == min(curve, key=lambda step: (curve[step], step))
    assert final.metrics["validation_mse"] == curve[final.training["kept_step"]]
    candidates = final.tuning["candidates"]
    assert final.tuning["score"] == "validation MSE" and len(candidates) >= 3
    best = min(candidates, key=lambda c: c["validation_mse"])
    assert final.tuning["chosen"] == best["hyperparameters"]
