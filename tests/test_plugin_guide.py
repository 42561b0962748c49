"""The author guide's code, run from an empty folder to a leaderboard row."""

import re
import subprocess
import sys

from conftest import ROOT, run_cli, write_keyword_csv

FILE_BLOCK = re.compile(r'```\w+ title="([^"]+)"\n(.*?)```', re.S)


def test_guide_builds_an_installable_plugin_that_reaches_the_leaderboard(tmp_path):
    files = dict(FILE_BLOCK.findall((ROOT / "docs" / "plugin-guide.md").read_text()))
    assert set(files) == {"peftbench_ln_tuning.py", "pyproject.toml"}
    code = [line for line in files["peftbench_ln_tuning.py"].splitlines() if line.strip()]
    assert len(code) <= 17, "the guide promises a method in about fifteen lines"
    package = tmp_path / "peftbench-ln-tuning"
    package.mkdir()
    for name, text in files.items():
        (package / name).write_text(text)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(site), str(package)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {"PYTHONPATH": str(site)}

    listed = run_cli("methods", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "ln_tuning  (peftbench-ln-tuning 0.1.0)" in listed.stdout
    assert "Trains only the LayerNorm scales" in listed.stdout

    data = write_keyword_csv(tmp_path / "data.csv")
    out = tmp_path / "runs"
    args = ["--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "3", "--out", str(out), "--quiet"]
    ran = run_cli("run", *args, "--methods", "ln_tuning,lora", env=env)
    assert ran.returncode == 0, ran.stderr
    board = run_cli("leaderboard", str(out), env=env)
    rows = [line for line in board.stdout.splitlines() if "| ln_tuning " in line]
    assert len(rows) == 1 and rows[0].rstrip().endswith("| yes                |")
