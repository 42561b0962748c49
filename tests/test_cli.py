import subprocess
import sys

import pandas as pd
import pytest

from conftest import keyword_rows
from peftbench.cli import main


def test_methods_lists_the_builtins_with_descriptions(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("lora (default)", "ia3", "prefix_tuning", "baseline", "majority"):
        assert name in out
    assert "Low-rank adapters" in out and "built-in" in out and "r=8" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--methods", "lora,lorra"], "unknown method 'lorra'; known methods: baseline, "),
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


def test_leaderboard_of_a_missing_folder(capsys, tmp_path):
    assert main(["leaderboard", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
