"""The results store: resume, kill-safety, and no finished result lost to a failed rerun."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, snapshot
from peftbench.cli import main
from peftbench.methods.lora import Lora
from peftbench.records import RecordWarning, RunRecord, read_record, read_records
from peftbench.runs.store import ResultStore


def test_corrupt_records_are_reported_and_rerun_on_resume(finished_sweep, tmp_path, capsys):
    data, out = finished_sweep
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


def test_sweep_killed_with_sigkill_resumes_to_the_records_of_a_clean_sweep(finished_sweep, tmp_path):
    data, _ = finished_sweep
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


def adapter_files(out: Path) -> dict[Path, bytes]:
    """Every file under a results folder's adapters/, by relative path, as bytes."""
    return {p.relative_to(out): p.read_bytes() for p in (out / "adapters").rglob("*") if p.is_file()}


def test_a_failed_forced_rerun_keeps_the_finished_record_and_adapter(
    finished_sweep, tmp_path, monkeypatch, capsys
):
    data, out = finished_sweep
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    adapters, before = adapter_files(copy), snapshot(copy)

    def full_disk(self, model, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Lora, "save", full_disk)
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(copy),
            "--methods", "lora", "--no-references", "--force", "--quiet"]  # fmt: skip
    assert main(args) == 1  # the sweep failed at what it was asked to do, even though nothing was lost
    err = capsys.readouterr().err
    assert "its earlier complete record and adapter are kept" in err and "No space left on device" in err
    assert "1 run(s) of this sweep did not complete: lora (failed)" in err
    assert snapshot(copy) == before
    assert adapter_files(copy) == adapters  # no staging left behind either


@pytest.fixture
def lora_adapters_cannot_move(monkeypatch):
    """Moving a staged LoRA adapter into place fails, as on a full disk; everything else works."""
    real_rename = Path.rename

    def rename(self, target):
        if self.name.startswith(".staging-lora-"):
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)


def test_an_adapter_that_cannot_be_moved_into_place_fails_its_run_and_the_sweep_goes_on(
    finished_sweep, tmp_path, lora_adapters_cannot_move, capsys
):
    data, _ = finished_sweep
    out = tmp_path / "runs"
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(out),
            "--methods", "lora,ia3", "--quiet"]  # fmt: skip
    assert main(args) == 1
    assert "1 run(s) of this sweep did not complete: lora (failed)" in capsys.readouterr().err
    records = {r.method: r for r in read_records(out)}
    assert records["lora"].status == "failed"
    assert records["lora"].error == "OSError: [Errno 28] No space left on device (during save)"
    assert records["ia3"].status == "complete" and (out / records["ia3"].adapter_path).is_dir()
    assert sorted(p.name for p in (out / "adapters").iterdir()) == sorted(
        r.run_id for r in records.values() if r.status == "complete"
    )  # no staging folder and no half-kept adapter left behind


def test_settle_keeps_an_earlier_complete_result_and_reports_the_new_failure(tmp_path):
    store = ResultStore(tmp_path)
    staged = store.staging("lora-seed0-abc")
    staged.mkdir(parents=True)
    (staged / "weights.safetensors").write_bytes(b"first")
    done = RunRecord(
        run_id="lora-seed0-abc", status="complete", model="m", dataset="d", method="lora", seed=0
    )
    assert store.settle(done, staged) is done and done.adapter_path == "adapters/lora-seed0-abc"
    assert not staged.exists() and store.complete("lora-seed0-abc") == done
    again = RunRecord(run_id="lora-seed0-abc", status="failed", model="m", dataset="d", method="lora", seed=0)
    again.fail("failed", "RuntimeError: boom", "train")
    with pytest.warns(RecordWarning, match="its earlier complete record and adapter are kept"):
        kept = store.settle(again, store.staging("lora-seed0-abc"))
    assert kept == done and store.complete("lora-seed0-abc") == done
    assert (tmp_path / "adapters" / "lora-seed0-abc" / "weights.safetensors").read_bytes() == b"first"
    fresh = RunRecord(run_id="ia3-seed0-def", status="failed", model="m", dataset="d", method="ia3", seed=0)
    (tmp_path / "adapters" / "ia3-seed0-def").mkdir()  # left by a sweep killed mid-promotion
    assert store.settle(fresh.fail("diverged", "loss became nan", "train"), None) is fresh
    assert not (tmp_path / "adapters" / "ia3-seed0-def").exists()
    assert read_record(tmp_path / "records" / "ia3-seed0-def.json").status == "diverged"


def test_a_forced_rerun_whose_adapter_cannot_be_moved_keeps_the_earlier_adapter(
    finished_sweep, tmp_path, lora_adapters_cannot_move, capsys
):
    data, out = finished_sweep
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    adapters, before = adapter_files(copy), snapshot(copy)
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(copy),
            "--methods", "lora", "--no-references", "--force", "--quiet"]  # fmt: skip
    assert main(args) == 1
    assert "its earlier complete record and adapter are kept" in capsys.readouterr().err
    assert snapshot(copy) == before
    assert adapter_files(copy) == adapters


def test_an_interrupted_run_leaves_no_staging_folder(finished_sweep, tmp_path, monkeypatch):
    data, _ = finished_sweep

    def interrupted(self, model, folder):
        (folder / "half.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Lora, "save", interrupted)
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out",
            str(tmp_path / "runs"), "--methods", "lora", "--no-references", "--quiet"]  # fmt: skip
    assert main(args) == 130
    assert list((tmp_path / "runs" / "adapters").iterdir()) == []
    assert list((tmp_path / "runs" / "records").glob("*.json")) == []
