"""The author guide's code, installed from empty folders and run to leaderboard rows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli, write_keyword_csv
from peftbench.records import read_records

FILE_BLOCK = re.compile(r'```\w+ title="([^"]+)"\n(.*?)```', re.S)
GUIDE_FILES = dict(FILE_BLOCK.findall((ROOT / "docs" / "plugin-guide.md").read_text()))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """Every package the guide writes, installed (as pip would from PyPI) into one site folder."""
    root = tmp_path_factory.mktemp("guide")
    for title, text in GUIDE_FILES.items():
        (root / title).parent.mkdir(parents=True, exist_ok=True)
        (root / title).write_text(text)
    site = root / "site"
    packages = sorted({str(root / Path(title).parent) for title in GUIDE_FILES})
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(site), *packages],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return {"PYTHONPATH": str(site)}


def test_the_guide_writes_three_packages_and_the_peft_method_is_short():
    assert set(GUIDE_FILES) == {
        "peftbench-waveft/peftbench_waveft.py",
        "peftbench-waveft/pyproject.toml",
        "peftbench-top-layers/peftbench_top_layers.py",
        "peftbench-top-layers/pyproject.toml",
        "peftbench-layerwise-decay/peftbench_layerwise_decay.py",
        "peftbench-layerwise-decay/pyproject.toml",
        "peftbench-binary/peftbench_binary.py",
        "peftbench-binary/pyproject.toml",
    }
    code = [line for line in GUIDE_FILES["peftbench-waveft/peftbench_waveft.py"].splitlines() if line.strip()]
    assert len(code) <= 17, "the guide promises a method in about fifteen lines"


def test_guide_builds_an_installable_plugin_that_reaches_the_leaderboard(installed, tmp_path):
    listed = run_cli("methods", env=installed)
    assert listed.returncode == 0, listed.stderr
    assert "waveft  (peftbench-waveft 0.1.0)" in listed.stdout
    assert "Trains n wavelet coefficients" in listed.stdout
    assert "--tune tries: learning_rate=[0.0003, 0.001, 0.003], n_frequency=[500, 1000]" in listed.stdout
    assert "top_layers  (peftbench-top-layers 0.1.0)" in listed.stdout
    assert "how many of the last transformer blocks train" in listed.stdout  # its help, from the model

    data = write_keyword_csv(tmp_path / "data.csv")
    out = tmp_path / "runs"
    args = ["--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "3", "--out", str(out), "--quiet"]
    ran = run_cli("run", *args, "--methods", "waveft,lora", env=installed)
    assert ran.returncode == 0, ran.stderr
    board = run_cli("leaderboard", str(out), "--columns", "reload_identical", env=installed)
    rows = [line for line in board.stdout.splitlines() if "| waveft " in line]
    assert len(rows) == 1 and rows[0].rstrip().endswith("| yes                |")


@pytest.mark.parametrize(("model", "blocks"), [("tiny-gpt2", 2), ("minilm", 6)])
def test_the_low_level_method_trains_the_last_blocks_and_reloads_identically(
    installed, tmp_path, model, blocks
):
    data = write_keyword_csv(tmp_path / "data.csv")
    out = tmp_path / "runs"
    args = ["--model", model, "--dataset", str(data), "--max-steps", "3", "--out", str(out), "--quiet",
            "--methods", "top_layers", "--no-references", "--hp", "top_layers.layers=2"]  # fmt: skip
    ran = run_cli("run", *args, env=installed)
    assert ran.returncode == 0, ran.stderr
    (record,) = read_records(out)
    assert record.status == "complete" and record.reload["predictions_identical"] is True
    assert 0 < record.costs["trainable_params"] < record.costs["total_params"]
    too_many = run_cli("run", *args[:-1], f"top_layers.layers={blocks + 1}", env=installed)
    assert too_many.returncode == 1 and "top_layers (failed)" in too_many.stderr
    (failed,) = [r for r in read_records(out) if r.status == "failed"]
    assert (
        failed.error
        == f"PeftbenchError: layers={blocks + 1}, but the model has {blocks} blocks (during prepare)"
    )


def test_the_decaying_method_sets_its_own_learning_rates_and_reports_its_own_numbers(installed, tmp_path):
    """One step of Adam moves each weight by its group's rate: the lower of tiny-gpt2's two blocks
    by decay x the upper one's; the record keeps the drift the method reported."""
    from safetensors.torch import load_file

    from peftbench.models import load_model, resolve_model

    data = write_keyword_csv(tmp_path / "data.csv")
    out = tmp_path / "runs"
    args = ["--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "1", "--out", str(out),
            "--quiet", "--methods", "layerwise_decay", "--no-references", "--hp",
            "layerwise_decay.decay=0.25"]  # fmt: skip
    ran = run_cli("run", *args, env=installed)
    assert ran.returncode == 0, ran.stderr
    (record,) = read_records(out)
    assert record.status == "complete" and record.reload["predictions_identical"] is True
    assert 0 < record.method_metrics["relative_drift"] < 0.1
    trained = load_file(str(out / record.adapter_path / "trained.safetensors"))
    model = load_model(resolve_model("tiny-gpt2"), ("bad", "good"), 0, 50256)
    start = {name: parameter.detach() for name, parameter in model.named_parameters()}
    moved = {
        block: torch.cat([(w - start[n]).abs().flatten() for n, w in trained.items() if f"h.{block}." in n])
        for block in (0, 1)
    }
    rate = record.hyperparameters["learning_rate"]
    assert moved[1].quantile(0.9).item() == pytest.approx(0.25 * rate, rel=1e-2)
    assert moved[0].quantile(0.9).item() == pytest.approx(0.25**2 * rate, rel=1e-2)


def test_the_guide_kind_of_task_is_listed_and_scores_a_sweep_by_its_metric(installed, tmp_path):
    listed = run_cli("tasks", env=installed)
    assert listed.returncode == 0, listed.stderr
    assert (
        "binary  (peftbench-binary 0.1.0)" in listed.stdout
        and "metrics: f1 (default), accuracy, mcc" in listed.stdout
    )
    data = write_keyword_csv(tmp_path / "data.csv")
    out = tmp_path / "runs"
    args = ["--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "3", "--out", str(out), "--quiet"]
    ran = run_cli(
        "run", *args, "--task", "binary", "--methods", "lora", "--no-inference-timing", env=installed
    )
    assert ran.returncode == 0, ran.stderr
    assert (
        "| method" in ran.stdout and "F1 % (95% CI)" in ran.stdout and "| majority (reference)" in ran.stdout
    )
    records = {record.method: record for record in read_records(out)}
    lora = records["lora"]
    assert (lora.task, lora.metric, lora.label_names) == ("binary", "f1", ["label"])
    assert lora.reload["predictions_identical"] and set(lora.predictions) <= {0, 1}
    assert len(set(records["majority"].predictions)) == 1
