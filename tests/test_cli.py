"""The command line: what it lists, and bad input refused in one line (exit 2) with nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import keyword_rows, record, snapshot
from peftbench.cli import main
from peftbench.records import write_record


def test_methods_lists_the_builtins_with_descriptions(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("lora (default)", "ia3", "prefix_tuning", "baseline", "majority"):
        assert name in out
    assert "Low-rank adapters" in out and "built-in" in out and "r=8" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--methods", "lora,lorra"], "unknown method 'lorra'; known methods: adalora, baseline, "),
        (["--hp", "lora.r=0"], "'r'=0 is out of range"),
        (["--hp", "lora.rank=4"], "method 'lora' has no hyper-parameter 'rank'"),
        (["--seeds", "0,x"], "seed 'x' is not an integer"),
        (["--text-column", "body"], "no text column 'body'; columns found: text, label"),
        (["--epochs", "0"], "epochs=0.0 is out of range"),
        (["--model", "./no/such/model"], "model path './no/such/model' does not exist"),
    ],
)
def test_bad_input_is_one_line_before_any_training(tmp_path, capsys, argv, words):
    data = tmp_path / "d.csv"
    pd.DataFrame(keyword_rows(40, 0)).to_csv(data, index=False)
    out = tmp_path / "runs"
    code = main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--out", str(out), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert words in err and err.startswith("peftbench: error:") and "Traceback" not in err
    assert not (out / "records").exists()


def test_a_method_that_cannot_train_the_model_is_refused_in_one_line_before_training(tmp_path, capsys):
    data = tmp_path / "d.csv"
    pd.DataFrame(keyword_rows(40, 0)).to_csv(data, index=False)
    out = tmp_path / "runs"
    argv = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--out", str(out), "--methods"]
    assert main([*argv, "lora,oft,prompt_tuning"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "peftbench: error: method 'oft' cannot train model 'tiny-gpt2' (GPT-2): peft's OFT adapts "
        "nn.Linear layers only, not GPT-2's transposed Conv1D projections; use lora, dora, vera or "
        "fourierft on GPT-2; also refused here: prompt_tuning (drop them from --methods)\n"
    )
    assert not (out / "records").exists()


def test_python_dash_m_peftbench_is_the_command_line():
    done = subprocess.run([sys.executable, "-m", "peftbench", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: peftbench ")
    assert "{methods,tasks,run,leaderboard,docs}" in done.stdout


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["run", "--model", "tiny-gpt2", "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_run_then_leaderboard_in_a_subprocess(tmp_path):
    data = tmp_path / "d.csv"
    pd.DataFrame(keyword_rows(60, 0)).to_csv(data, index=False)
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "peftbench.cli"]
    run = subprocess.run(
        [*command, "run", "--model", "tiny-gpt2", "--dataset", str(data), "--methods", "lora",
         "--max-steps", "2", "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "| lora" in run.stdout
    board = subprocess.run([*command, "leaderboard", str(out)], capture_output=True, text=True, timeout=120)
    assert board.returncode == 0
    assert "baseline (baseline)" in board.stdout and "majority (reference)" in board.stdout
    csv = subprocess.run(
        [*command, "leaderboard", str(out), "--format", "csv"], capture_output=True, text=True
    )
    assert csv.stdout.startswith("rank,model,dataset,method")


HEAVY = ("torch", "transformers", "peft", "datasets")
PROBE = """
import sys
from peftbench.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as done:  # --help
    code = done.code
print("loaded:", ",".join(name for name in {heavy!r} if name in sys.modules))
sys.exit(code)
"""


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["leaderboard"], ["leaderboard", "--aggregate"]]
)
def test_help_and_the_leaderboard_load_no_torch_transformers_peft_or_datasets(tmp_path, args):
    for dataset in ("a", "b"):
        for method, role in (("baseline", "baseline"), ("lora", "method")):
            made = record(method, 0, 0.7 if method == "lora" else 0.5, role=role, predictions=[1, 0, 1, 1],
                          references=[1, 0, 0, 1])  # fmt: skip
            made.run_id, made.dataset = f"{method}-{dataset}", dataset
            write_record(made, tmp_path)
    args = [*args[:1], str(tmp_path), *args[1:]] if args[0] == "leaderboard" else args
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("loaded:"), done.stdout[-300:]
    assert "usage:" in done.stdout or "| lora" in done.stdout


def test_leaderboard_of_a_missing_folder(capsys, tmp_path):
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def bad_folder(tmp_path: Path, **frames) -> Path:
    """A dataset folder whose splits are the keyword task unless replaced by ``frames``."""
    folder = tmp_path / "bad"
    folder.mkdir()
    for split, count, seed in (("train", 40, 0), ("validation", 16, 1), ("test", 16, 2)):
        frame = frames.get(split, pd.DataFrame(keyword_rows(count, seed)))
        frame.to_parquet(folder / f"{split}.parquet")
    return folder


CASES = {
    "unknown method": (["--methods", "lora,lorra"], "unknown method 'lorra'; known methods:"),
    "unknown Hub model": (
        ["--model", "no-such-org/no-such-model"],
        "could not load tokenizer 'no-such-org/no-such",
    ),
    "missing model path": (["--model", "./missing/model"], "model path './missing/model' does not exist"),
    "unknown Hub dataset": (
        ["--dataset", "no_such_dataset_xyz"],
        "could not load dataset 'no_such_dataset_xyz'",
    ),
    "missing dataset path": (["--dataset", "./missing.csv"], "dataset path './missing.csv' does not exist"),
    "missing text column": (["--text-column", "body"], "no text column 'body'; columns found: text, label"),
    "missing label column": (
        ["--label-column", "stars"],
        "no label column 'stars'; columns found: text, label",
    ),
    "unknown hyper-parameter": (["--hp", "lora.rank=4"], "method 'lora' has no hyper-parameter 'rank'"),
    "wrong type": (["--hp", "lora.r=big"], "hyper-parameter 'r' must be int, got 'big'"),
    "r=0": (["--hp", "lora.r=0"], "hyper-parameter 'r'=0 is out of range [1, inf]"),
    "negative learning rate": (
        ["--hp", "lora.learning_rate=-0.001"],
        "'learning_rate'=-0.001 is out of range",
    ),
    "dropout above 1": (["--hp", "lora.lora_dropout=2"], "'lora_dropout'=2.0 is out of range"),
    "hp for a method not run": (
        ["--hp", "ia3.learning_rate=0.1"],
        "given for 'ia3', which is not in --methods",
    ),
    "malformed override": (["--hp", "r=16"], "bad hyper-parameter override 'r=16': write METHOD.KEY=VALUE"),
    "zero epochs": (["--epochs", "0"], "training setting epochs=0.0 is out of range"),
    "zero batch size": (["--batch-size", "0"], "training setting batch_size=0 is out of range"),
    "seed not an integer": (["--seeds", "0,one"], "seed 'one' is not an integer"),
    "negative seed": (["--seeds", "-1"], "seed -1 is not a non-negative integer"),
    "huge seed": (["--seeds", "18446744073709551616"], "seed 18446744073709551616 is too large"),
    "unknown precision": (["--precision", "fp8"], "unknown precision 'fp8'"),
    "GPU that is not there": (["--device", "cuda:3"], "no CUDA GPU is available"),
    "max length beyond the model's positions": (
        ["--max-length", "100000"],
        "--max-length 100000 is more than model 'tiny-gpt2' takes: it has 512 positions; use --max-length",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_in_one_line_and_keeps_finished_records(finished_sweep, capsys, case):
    data, out = finished_sweep
    before = snapshot(out)
    argv, words = CASES[case]
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--out", str(out), "--quiet", *argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert words in err, err
    assert err.startswith("peftbench: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(out) == before


DATA_CASES = {
    "label outside the classes": (
        {"test": pd.DataFrame({"text": ["a good", "b bad"], "label": [1, 7]})},
        "the test split has 1 labels outside 0..1 (first: 7)",
    ),
    "empty split": ({"validation": pd.DataFrame({"text": [], "label": []})}, "the validation split is empty"),
    "no train split": ({"training": None}, "has no train split"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_datasets_are_refused(finished_sweep, tmp_path, capsys, case):
    _, out = finished_sweep
    frames, words = DATA_CASES[case]
    if "training" in frames:
        folder = tmp_path / "bad"
        folder.mkdir()
        pd.DataFrame(keyword_rows(8, 0)).to_parquet(folder / "other.parquet")
        (folder / "other.parquet").rename(folder / "dev.parquet")
    else:
        folder = bad_folder(tmp_path, **frames)
    before = snapshot(out)
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(folder), "--out", str(out), "--quiet"]) == 2
    assert words in capsys.readouterr().err
    assert snapshot(out) == before


def test_a_tokenizer_without_vocabulary_files_is_refused(finished_sweep, tmp_path, monkeypatch, capsys):
    """transformers quietly builds an empty tokenizer from a folder without vocabulary files."""
    data, out = finished_sweep
    (tmp_path / "mirror" / "tokenizers" / "gpt2").mkdir(parents=True)
    monkeypatch.setenv("PEFTBENCH_MIRROR", str(tmp_path / "mirror"))
    before = snapshot(out)
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "tokenizer" in err and "has no vocabulary" in err and "PEFTBENCH_MIRROR" in err, err
    assert snapshot(out) == before


def test_unreadable_files_and_bad_output_paths(tmp_path, capsys):
    weird = tmp_path / "data.xlsx"
    weird.write_bytes(b"\x00\x01binary")
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(weird), "--out", str(tmp_path / "r")]) == 2
    assert "cannot read" in capsys.readouterr().err
    garbage = tmp_path / "data.parquet"
    garbage.write_bytes(b"not a parquet file at all")
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(garbage), "--out", str(tmp_path / "r")]) == 2
    assert "could not read dataset" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--model", "tiny-gpt2", "--out", str(blocker)]) == 2
    assert "output path" in capsys.readouterr().err
    assert main(["run", "--model", "tiny-gpt2", "--out", str(blocker / "below")]) == 2
    assert "is not writable" in capsys.readouterr().err
