"""Bad input and faults: one clear line, no traceback, nothing finished is lost."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, keyword_rows
from fake_plugins import FaultyPlugin
from peftbench.cli import main
from peftbench.leaderboard import Leaderboard
from peftbench.methods.lora import Lora
from peftbench.plugins import default_plugin_manager
from peftbench.records import read_records
from peftbench.runner import refuse_pickles


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A results folder holding one finished sweep, and the data it used."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    data.mkdir()
    for split, count, seed in (("train", 96, 0), ("validation", 32, 1), ("test", 32, 2)):
        pd.DataFrame(keyword_rows(count, seed)).to_parquet(data / f"{split}.parquet")
    out = root / "runs"
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    return data, out


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "records").glob("*.json"))}


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
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_in_one_line_and_keeps_finished_records(finished, capsys, case):
    data, out = finished
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
def test_bad_datasets_are_refused(finished, tmp_path, capsys, case):
    _, out = finished
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


def test_a_tokenizer_without_vocabulary_files_is_refused(finished, tmp_path, monkeypatch, capsys):
    """transformers quietly builds an empty tokenizer from a folder without vocabulary files."""
    data, out = finished
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


def test_failing_and_diverging_methods_are_recorded_and_the_sweep_goes_on(finished, tmp_path, capsys):
    data, _ = finished
    out = tmp_path / "runs"
    manager = default_plugin_manager()
    manager.register_plugin(FaultyPlugin(), "faulty", "peftbench-faulty 0.1")
    try:
        methods = "exploding,nan_head,lora"
        code = main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--methods", methods,
                     "--max-steps", "3", "--out", str(out), "--quiet"])  # fmt: skip
    finally:
        manager.unregister(name="faulty")
    captured = capsys.readouterr()
    assert code == 1 and "2 run(s) of this sweep did not complete" in captured.err
    records = {r.method: r for r in read_records(out)}
    assert records["exploding"].status == "failed"
    assert records["exploding"].error == "RuntimeError: kaboom in forward (during train)"
    assert (
        records["nan_head"].status == "diverged" and "loss became nan by step 3" in records["nan_head"].error
    )
    assert records["lora"].status == "complete"
    assert not (out / "adapters" / records["exploding"].run_id).exists()
    frame = Leaderboard(records.values()).to_frame().set_index("method")
    assert frame.loc["exploding", "seeds"] == 0 and frame.loc["exploding", "failed_runs"] == 1
    assert pd.isna(frame.loc["nan_head", "accuracy"])
    assert "| exploding" in captured.out and "| failed" in captured.out
    assert "exploding (failed)" in captured.err and "nan_head (diverged)" in captured.err
    # A later sweep into the same folder is judged by its own runs, not the failures before it.
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(data), "--methods", "lora",
                 "--max-steps", "3", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert "did not complete" not in capsys.readouterr().err


def test_corrupt_records_are_reported_and_rerun_on_resume(finished, tmp_path, capsys):
    data, out = finished
    copy = tmp_path / "runs"
    (copy / "records").mkdir(parents=True)
    for name, content in snapshot(out).items():
        (copy / "records" / name).write_bytes(content)
    victim = next(p for p in (copy / "records").glob("lora-*.json"))
    victim.write_text(victim.read_text()[:100])  # truncated, as by a full disk
    (copy / "records" / "future.json").write_text('{"schema_version": 999}')
    assert main(["leaderboard", str(copy)]) == 0
    captured = capsys.readouterr()
    assert f"skipped record {victim}: not valid JSON" in captured.err
    assert "unknown schema version 999" in captured.err
    assert "| lora" not in captured.out and "baseline (baseline)" in captured.out
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(copy)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("skipped, complete record exists") == 3 and "lora seed 0: accuracy" in err
    assert victim.read_bytes() != b"" and read_records(copy)


def test_pickled_adapters_are_refused(tmp_path):
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(
        Exception, match="holds pickle files \\(adapter_model.bin\\); peftbench loads safetensors"
    ):
        refuse_pickles(tmp_path)


def test_sweep_killed_with_sigkill_resumes_to_the_records_of_a_clean_sweep(finished, tmp_path):
    data, _ = finished
    command = [sys.executable, "-m", "peftbench.cli", "run", "--model", "tiny-gpt2", "--dataset", str(data),
               "--methods", "lora,ia3", "--seeds", "0,1", "--epochs", "8", "--quiet"]  # fmt: skip
    clean = subprocess.run([*command, "--out", str(tmp_path / "clean")], capture_output=True, timeout=600)
    assert clean.returncode == 0, clean.stderr

    killed_out = tmp_path / "killed"
    process = subprocess.Popen([*command, "--out", str(killed_out)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((killed_out / "records").glob("*.json"))) < 3:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # mid-sweep: baseline, majority and a run or so are done
    process.wait()
    done_before = {p.name: p.read_bytes() for p in (killed_out / "records").glob("*.json")}
    assert 3 <= len(done_before) < 8, "the kill must land in the middle of the sweep"

    resumed = subprocess.run(
        [*command, "--out", str(killed_out)], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    for name, content in done_before.items():  # finished runs were skipped, not redone
        assert (killed_out / "records" / name).read_bytes() == content
    expected, got = read_records(tmp_path / "clean"), read_records(killed_out)
    assert [r.run_id for r in got] == [r.run_id for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.status == theirs.status == "complete"
        assert mine.predictions == theirs.predictions
        assert mine.metrics == pytest.approx(theirs.metrics)
    assert not [p for p in (killed_out / "records").iterdir() if not p.name.endswith(".json")]
    assert ROOT.exists()


def test_a_failed_forced_rerun_keeps_the_finished_record_and_adapter(finished, tmp_path, monkeypatch, capsys):
    data, out = finished
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    adapters = {p.relative_to(copy): p.read_bytes() for p in (copy / "adapters").rglob("*") if p.is_file()}
    before = snapshot(copy)

    def full_disk(self, model, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Lora, "save", full_disk)
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(copy),
            "--methods", "lora", "--no-references", "--force", "--quiet"]  # fmt: skip
    main(args)
    err = capsys.readouterr().err
    assert "its earlier complete record and adapter are kept" in err and "No space left on device" in err
    assert snapshot(copy) == before
    after = {p.relative_to(copy): p.read_bytes() for p in (copy / "adapters").rglob("*") if p.is_file()}
    assert after == adapters  # no staging left behind either
