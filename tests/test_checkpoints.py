"""Training length chosen on validation: the best checkpoint is what a run tests, saves and reloads;
patience ends a run early; what decides the kept checkpoint is part of the run id, and one
checkpoint at the end without patience keeps the run ids of the records made before it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import peftbench
from conftest import ROOT, keyword_folder
from fake_plugins import HeadProbe, MethodsPlugin
from peftbench.data import DatasetSpec, load_splits
from peftbench.models import classification_head
from peftbench.plugins import collect_methods
from peftbench.records import read_record, run_key
from peftbench.runs.context import build_context
from peftbench.runs.executors import LocalExecutor
from peftbench.runs.runner import execute_run
from peftbench.runs.spec import make_spec, run_parts
from peftbench.settings import TrainConfig, sweep_config


class Sabotaged(HeadProbe):
    """A linear probe whose head is wiped after every step from ``from_step`` on: its validation
    accuracy falls to the majority class's there, so the best checkpoint comes before."""

    name = "sabotaged"
    description = "Learns, then forgets."
    defaults = {"learning_rate": 0.05}

    def __init__(self, from_step: int) -> None:
        self.from_step = from_step

    def after_step(self, model, step):
        if step >= self.from_step:
            for parameter in classification_head(model).parameters():
                parameter.data.zero_()


SETTINGS = dict(
    model="tiny-gpt2", methods="sabotaged", references=False, progress=False, measure_inference=False
)


@pytest.fixture(scope="module")
def keywords(tmp_path_factory) -> Path:
    return keyword_folder(tmp_path_factory.mktemp("keywords"), train=256, validation=64, test=64)


def test_the_best_checkpoint_not_the_last_is_tested_saved_and_reloaded(keywords, tmp_path, register_plugin):
    register_plugin(MethodsPlugin(Sabotaged(from_step=24)))  # 8 steps an epoch: the last one is wiped
    board = peftbench.run(**SETTINGS, dataset=str(keywords), out=tmp_path, checkpoints=4)
    (record,) = board.records
    assert record.status == "complete", record.error
    curve = dict(map(tuple, record.curves["validation_accuracy"]))
    assert list(curve) == [6, 12, 18, 24] and curve[24] < 0.7  # the wiped head: the majority class
    kept = record.training["kept_step"]
    assert kept < record.training["last_step"] == 24 and curve[kept] == max(curve.values()) >= 0.9
    assert record.metrics["validation_accuracy"] == curve[kept]  # the kept checkpoint's own score
    assert record.metrics["accuracy"] >= 0.9  # tested: the kept checkpoint, not the wiped last one
    assert record.reload["predictions_identical"] is True  # saved and reloaded: the same model
    last = curve[24]  # the curve's last point keeps its standard error: sqrt(p (1 - p) / n)
    validation = len(load_splits(DatasetSpec(str(keywords))).validation)
    assert record.metrics["validation_standard_error"] == pytest.approx(
        math.sqrt(last * (1 - last) / validation)
    )
    saved = load_file(tmp_path / record.adapter_path / "head.safetensors")
    assert all(value.abs().sum() > 0 for value in saved.values())  # not the wiped head


def test_patience_stops_a_run_and_the_record_says_where(keywords, tmp_path, register_plugin):
    register_plugin(MethodsPlugin(Sabotaged(from_step=10)))
    common = dict(**SETTINGS, dataset=str(keywords), checkpoints=8)
    (patient,) = peftbench.run(**common, out=tmp_path / "patient", patience=1).records
    assert patient.training["stopped_early"] is True
    assert (
        patient.training["last_step"] == 12 < patient.training["max_steps"] == 24
    )  # one look after the wipe
    kept = patient.training["kept_step"]
    assert kept <= 9 and patient.costs["train_steps"] == 12
    assert [step for step, _ in patient.curves["validation_accuracy"]] == [3, 6, 9, 12]
    assert patient.curves["train_loss"][-1][0] == 12  # the last stretch's loss is logged
    (plain,) = peftbench.run(**common, out=tmp_path / "plain").records
    assert plain.training["stopped_early"] is False and plain.training["last_step"] == 24
    assert "validation_standard_error" not in patient.metrics  # kept for a curve that reaches the end
    assert plain.run_id != patient.run_id  # patience decides what is kept: a different run
    assert plain.metrics["validation_accuracy"] == patient.metrics["validation_accuracy"]


def test_what_decides_the_kept_checkpoint_is_in_the_run_id(keywords, tmp_path):
    ids = {}
    settings = {"one": dict(checkpoints=1), "four": dict(checkpoints=4), "patient": dict(patience=2)}
    for name, extra in settings.items():
        board = peftbench.run(model="tiny-gpt2", dataset=str(keywords), methods="lora", max_steps=2,
                              references=False, progress=False, out=tmp_path / name, **extra)  # fmt: skip
        ids[name] = board.records[0].run_id
    assert len(set(ids.values())) == 3


@pytest.mark.parametrize(
    "path",
    [
        "leaderboard/previous/minilm-emotion/lora-seed0-022eb00e0305.json",
        "leaderboard/previous/minilm-rotten_tomatoes/ia3-tune-seed0-3cf4ef3e6214.json",
    ],
)
def test_one_checkpoint_at_the_end_without_patience_keeps_the_run_ids_of_earlier_records(path):
    record = read_record(ROOT / path)

    def run_id(train: TrainConfig) -> str:
        parts = run_parts(
            record.model, record.dataset, record.dataset_fingerprint, record.method, record.method_source,
            record.hyperparameters, train.model_dump(), record.seed, record.peftbench_version,
        )  # fmt: skip
        return f"{record.run_id.rsplit('-', 1)[0]}-{run_key({**parts, 'stage': record.stage})}"

    assert run_id(TrainConfig(**record.train_config, checkpoints=1, patience=None)) == record.run_id
    assert run_id(TrainConfig(**record.train_config)) != record.run_id  # 8 checkpoints: another run


def test_a_saved_state_continues_to_the_run_trained_straight_through(keywords, tmp_path):
    """A tuning run stopped at step 6 and a final run continuing its saved state give exactly the
    record of the run trained straight through: weights, checkpoints, losses, predictions. Both in
    fp32 (the parts' executor is started so), also on a CPU where auto would pick bf16."""
    common = dict(model="tiny-gpt2", dataset=str(keywords), methods="lora", max_steps=12, checkpoints=4,
                  seeds=[0], references=False, progress=False, measure_inference=False,
                  precision="fp32")  # fmt: skip
    straight = peftbench.run(**common, out=tmp_path / "straight", hp={"lora": {"learning_rate": 3e-3}})
    (reference,) = straight.records
    ctx = build_context(sweep_config(**common, out=tmp_path / "parts"), LocalExecutor().start("cpu", "fp32"))
    entry = collect_methods().get("lora")
    hp = entry.method.hyperparameters({"learning_rate": 3e-3})
    first = make_spec(ctx, entry, hp, 0, "tune", until=6, keep_state=True)
    half = execute_run(ctx, first, tmp_path / "unused", state_dir=tmp_path / "state")
    assert half.training["last_step"] == 6 and half.training["until"] == 6
    meta = json.loads((tmp_path / "state" / "state.json").read_text())
    assert meta["step"] == 6 and [e["step"] for e in meta["evaluations"]] == [3, 6]
    final = make_spec(ctx, entry, hp, 0, "final", resume=first.run_id)
    assert final.run_id == reference.run_id  # where a run continues from is not part of what it is
    record = execute_run(ctx, final, tmp_path / "adapter", resume=tmp_path / "state")
    assert record.training["continued_from"] == first.run_id and record.costs["spent_train_steps"] == 6
    assert record.predictions == reference.predictions and record.metrics == reference.metrics
    assert record.curves == reference.curves  # every logged loss and checkpoint score too
    ours = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    theirs = load_file(tmp_path / "straight" / reference.adapter_path / "adapter_model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    stranger = make_spec(ctx, entry, entry.method.hyperparameters({"learning_rate": 1e-2}), 0, resume="x")
    other = execute_run(ctx, stranger, tmp_path / "other", resume=tmp_path / "state")
    assert other.training["continued_from"] is None  # another run's state is never continued
