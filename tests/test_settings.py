"""Sweep and training settings: declared once, checked before any training, refused in one line."""

from __future__ import annotations

import argparse
import inspect
import math

import numpy as np
import pandas as pd
import pytest

import peftbench
from conftest import write_keyword_csv
from peftbench.cli import build_parser, main
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.settings import MAX_EPOCHS, TrainConfig, setting_fields, sweep_config


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        (
            {"epochs": math.inf},
            "training setting epochs=inf is out of range: use a number above 0 and at most 1000",
        ),
        ({"epochs": math.nan}, "training setting epochs=nan is out of range"),
        ({"epochs": -math.inf}, "training setting epochs=-inf is out of range"),
        (
            {"epochs": 1e9},
            "training setting epochs=1000000000.0 is out of range: use a number above 0 and at most",
        ),
        ({"epochs": MAX_EPOCHS + 1}, "training setting epochs=1001 is out of range"),
        ({"max_grad_norm": math.nan}, "training setting max_grad_norm=nan is out of range"),
        ({"max_grad_norm": math.inf}, "training setting max_grad_norm=inf is out of range"),
        ({"epochs": "2"}, "training setting epochs='2' must be a number"),
        ({"batch_size": 8.5}, "training setting batch_size=8.5 must be a whole number: use at least 1"),
        ({"max_steps": True}, "training setting max_steps=True must be a whole number"),
    ],
)
def test_non_finite_and_absurd_training_settings_are_refused(settings, words):
    with pytest.raises(PeftbenchError) as error:
        TrainConfig(**settings)
    assert str(error.value).startswith(words)


def test_largest_epochs_and_fractions_still_allowed():
    assert TrainConfig(epochs=MAX_EPOCHS).epochs == MAX_EPOCHS
    assert TrainConfig(epochs=0.5, max_steps=None).epochs == 0.5
    assert TrainConfig(epochs=np.float64(2.0), batch_size=np.int64(4)).batch_size == 4


@pytest.mark.parametrize(("value", "shown"), [("1e9", "1000000000.0"), ("inf", "inf"), ("nan", "nan")])
def test_absurd_epochs_on_the_command_line_are_one_line(tmp_path, capsys, value, shown):
    data = write_keyword_csv(tmp_path / "d.csv", rows=40)
    out = tmp_path / "runs"
    assert (
        main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--out", str(out), "--epochs", value])
        == 2
    )
    err = capsys.readouterr().err
    assert (
        err.startswith(f"peftbench: error: training setting epochs={shown} is out of range")
        and err.count("\n") == 1
    )
    assert not (out / "records").exists()


def _cli(field) -> dict:
    return (field.json_schema_extra or {}).get("cli", {})


def _run_options() -> dict[str, argparse.Action]:
    """The ``run`` sub-command's options, by destination (but ``--columns``, which says how the
    leaderboard is printed, not what runs)."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    actions = commands.choices["run"]._actions
    return {action.dest: action for action in actions if action.dest not in ("help", "columns")}


def test_every_setting_is_a_run_option_with_its_help_and_a_keyword_of_peftbench_run():
    options, parameters = _run_options(), inspect.signature(peftbench.run).parameters
    assert set(options) == set(setting_fields()) == set(parameters)
    for name, field in setting_fields().items():
        shown = options[name].help.replace("%%", "%")  # argparse's escape for a percent sign
        assert shown.startswith(_cli(field).get("help") or field.description), name
        assert parameters[name].default == field.get_default(call_default_factory=True), name
    # Settings the API lacked before they were declared once (evaluation batch, clipping, logging):
    assert {"eval_batch_size", "max_grad_norm", "log_every"} <= set(parameters) & set(options)


def test_run_help_shows_every_setting_with_its_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps help text
    for name, field in setting_fields().items():
        flag = _cli(field).get("flag") or "--" + name.replace("_", "-")
        assert flag in text and (_cli(field).get("help") or field.description) in text, name
    assert (
        "--epochs EPOCHS the most passes over the training split" in text
        and "(default: 3.0, > 0 and ≤ 1000)" in text
    )


def test_new_settings_reach_the_record_and_every_training_setting_is_recorded(tmp_path):
    data = write_keyword_csv(tmp_path / "d.csv", rows=60)
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(data), methods="lora", out=tmp_path / "runs", max_steps=2,
        eval_batch_size=7, max_grad_norm=0.5, log_every=1, references=False, progress=False,
    )  # fmt: skip
    (record,) = board.records
    assert set(record.train_config) == set(TrainConfig.model_fields)
    assert (record.train_config["eval_batch_size"], record.train_config["max_grad_norm"]) == (7, 0.5)
    assert record.train_config["log_every"] == 1 and record.train_config["precision"] in {"fp32", "bf16"}


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--seeds", "0,1", "--num-seeds", "3"], "--seeds and --num-seeds are mutually exclusive"),
        (["--methods", "lora,ia3,lora"], "method 'lora' is named twice in --methods"),
        (["--num-seeds", "0"], "setting num_seeds=0 is out of range: use at least 1"),
        (["--curve-points", "-1"], "setting curve_points=-1 is out of range: use at least 0"),
        (["--hp", "lora.r=4", "--hp", "lora.r=8"], "hyper-parameter 'lora.r' is given twice: give it once"),
        (["--dataset", "emotion,emotion"], "dataset 'emotion' is named twice in --dataset"),
        (["--dataset", "emotion,,imdb"], "an empty dataset name in --dataset"),
        (["--dataset", "emotion,imdb", "--dataset-config", "x"], "--dataset-config applies to one dataset"),
    ],
)
def test_contradictory_or_repeated_settings_are_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "runs"
    assert main(["run", "--model", "tiny-gpt2", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftbench: error: ") and words in err and err.count("\n") == 1
    assert not (out / "records").exists()


def test_num_seeds_means_seeds_from_zero_and_settings_parse_like_the_command_line():
    assert sweep_config(num_seeds=3).seeds == (0, 1, 2)
    config = sweep_config(methods="lora, ia3", seeds="2,0,2", hp=["lora.r=16"])
    assert config.methods == ("lora", "ia3") and config.seeds == (2, 0)  # each seed once, in order
    assert config.hp == {"lora": {"r": "16"}}  # converted by the method's own hyper-parameters later


@pytest.mark.parametrize("count", ["3", 3.0, True])
def test_num_seeds_must_be_a_whole_number_not_something_like_one(count):
    with pytest.raises(PeftbenchError, match=f"setting num_seeds={count!r} must be a whole number"):
        sweep_config(num_seeds=count)


def test_an_unknown_setting_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as error:
        peftbench.run(model="tiny-gpt2", epoch=2)
    message = str(error.value)
    assert message.startswith("unknown setting 'epoch'; known settings: model, dataset, ")
    assert "epochs" in message and "eval_batch_size" in message


def test_a_new_setting_is_one_field(monkeypatch):
    """Declared once, a setting is a command-line option, a keyword, checked and recorded."""
    from pydantic import Field

    from peftbench import settings

    class Extended(TrainConfig):
        label_smoothing: float = Field(0.0, ge=0, le=1, description="target mass spread over the classes")

    monkeypatch.setattr(settings, "TrainConfig", Extended)
    option = _run_options()["label_smoothing"]
    assert option.option_strings == ["--label-smoothing"] and option.help.startswith("target mass spread")
    config = sweep_config(label_smoothing=0.1, epochs=2)
    assert config.train.model_dump()["label_smoothing"] == 0.1 and config.train.epochs == 2.0
    with pytest.raises(PeftbenchError, match="training setting label_smoothing=2 is out of range"):
        sweep_config(label_smoothing=2)


def test_several_datasets_parse_like_the_command_line_and_keep_their_order():
    from pathlib import Path

    assert sweep_config(dataset="rotten_tomatoes, emotion").dataset == ("rotten_tomatoes", "emotion")
    assert sweep_config(dataset=["emotion", Path("/data/a,b")]).dataset == ("emotion", "/data/a,b")
    assert sweep_config(dataset=Path("/data/x")).dataset == ("/data/x",)  # a path is one dataset
    assert sweep_config().dataset == ("rotten_tomatoes",)
    assert sweep_config(dataset="glue", dataset_config="sst2").dataset_config == "sst2"
    with pytest.raises(PeftbenchError, match="dataset 3 is not a name or path"):
        sweep_config(dataset=[3])


def test_column_names_apply_to_every_dataset_and_a_missing_one_names_its_dataset(tmp_path):
    from peftbench.runs.context import load_datasets

    first, second = write_keyword_csv(tmp_path / "a.csv"), write_keyword_csv(tmp_path / "b.csv", rows=40)
    for path in (first, second):
        renamed = pd.read_csv(path).rename(columns={"text": "sentence", "label": "y"})
        renamed.to_csv(path, index=False)
    config = sweep_config(dataset=[first, second], text_column="sentence", label_column="y")
    loaded = load_datasets(config)
    assert list(loaded) == [str(first), str(second)]
    assert [len(data.train) + len(data.validation) + len(data.test) for data in loaded.values()] == [60, 40]
    pd.read_csv(second).rename(columns={"y": "target"}).to_csv(second, index=False)
    with pytest.raises(PeftbenchError, match="b.csv"):
        load_datasets(config)
