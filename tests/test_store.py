"""The results store: resume, kill-safety, no finished result lost to a failed rerun or a full disk,
and what an interrupted promotion leaves put right on the next start."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, claimed, snapshot
from peftbench import records
from peftbench.cli import main
from peftbench.methods.lora import Lora
from peftbench.records import RecordWarning, RunRecord, read_record, read_records
from peftbench.runs import store as store_module
from peftbench.runs.store import ResultStore

FULL = "No space left on device"


def leftovers(out: Path) -> list[str]:
    """Whatever a sweep must not leave behind: staging and set-aside adapters, journals, claims,
    temporary record files."""
    adapters = [p.name for p in (out / "adapters").iterdir() if p.name.startswith(".")]
    journals = [p.name for p in (out / "claims").glob("*.promotion.json")]
    temporary = [p.name for p in (out / "records").iterdir() if p.name.startswith(".")]
    return adapters + journals + temporary + claimed(out)


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

    def mid_run() -> bool:  # a few runs done, and one under way (its claim held, no record yet)
        done = {p.stem for p in (killed_out / "records").glob("*.json")}
        held = set(claimed(killed_out)) if (killed_out / "claims").is_dir() else set()
        return len(done) >= 3 and bool(held - done)

    while time.time() < deadline and not mid_run():
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)  # mid-sweep: baseline, majority and a run or so are done
    process.wait()
    done_before = {p.name: p.read_bytes() for p in (killed_out / "records").glob("*.json")}
    assert 3 <= len(done_before) < 8, "the kill must land in the middle of the sweep"
    held = [run_id for run_id in claimed(killed_out) if f"{run_id}.json" not in done_before]
    assert held, "the kill must land while a run holds its claim"

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
        taken_over = [note for note in mine.notes if note.startswith("claim taken over")]
        if mine.run_id in held:  # the killed sweep's claim was taken over at once, and the record says so
            assert taken_over == [
                f"claim taken over from pid {process.pid} on {os.uname().nodename}, which no longer runs"
            ]
        else:
            assert not taken_over
    assert not [p for p in (killed_out / "records").iterdir() if not p.name.endswith(".json")]
    assert leftovers(killed_out) == []
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

    def broken(self, model, folder):
        raise RuntimeError("the method cannot save this model")

    monkeypatch.setattr(Lora, "save", broken)
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(copy),
            "--methods", "lora", "--no-references", "--force", "--quiet"]  # fmt: skip
    assert main(args) == 1  # the sweep failed at what it was asked to do, even though nothing was lost
    err = capsys.readouterr().err
    assert "its earlier complete record and adapter are kept" in err and "cannot save this model" in err
    assert "1 run(s) of this sweep did not complete: lora (failed)" in err
    assert snapshot(copy) == before
    assert adapter_files(copy) == adapters  # no staging left behind either
    assert leftovers(copy) == []


def full_disk_args(data: Path, out: Path, *more: str) -> list[str]:
    return ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(out),
            "--quiet", *more]  # fmt: skip


def error_line(err: str) -> str:
    """The one line a sweep stopped with."""
    (line,) = [line for line in err.splitlines() if line.startswith("peftbench: error:")]
    return line


def test_a_full_disk_while_a_record_is_written_keeps_the_earlier_record_byte_identical(
    finished_sweep, tmp_path, monkeypatch, capsys
):
    data, out = finished_sweep
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    adapters, before = adapter_files(copy), snapshot(copy)
    real_write = records.write_atomically

    def full_disk(path, write):  # the record's temporary file fills the disk half-way through
        def half(file):
            content = io.BytesIO()
            write(content)
            file.write(content.getvalue()[: len(content.getvalue()) // 2])
            raise OSError(errno.ENOSPC, FULL)

        real_write(path, half if path.parent.name == "records" else write)

    monkeypatch.setattr(records, "write_atomically", full_disk)
    args = full_disk_args(data, copy, "--methods", "lora", "--no-references", "--force")
    assert main(args) == 2  # stopped, not a failed run
    (lora,) = [r for r in read_records(out) if r.method == "lora"]
    assert error_line(capsys.readouterr().err) == (
        f"peftbench: error: could not write the record of {lora.run_id} into {copy / 'records'}: {FULL}; "
        "every result already there is kept, and the next start resumes from it once the folder can "
        "take writes again"
    )
    assert snapshot(copy) == before  # byte-identical, half a temporary file removed
    assert adapter_files(copy) == adapters  # the new adapter moved out again, the earlier one back
    assert leftovers(copy) == []
    monkeypatch.undo()
    assert main(args) == 0  # the next start resumes
    assert read_record(copy / "records" / f"{lora.run_id}.json").finished_at >= lora.finished_at
    assert leftovers(copy) == []


def test_a_full_disk_while_an_adapter_is_saved_stops_the_sweep_and_keeps_everything(
    finished_sweep, tmp_path, monkeypatch, capsys
):
    data, out = finished_sweep
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    adapters, before = adapter_files(copy), snapshot(copy)

    def full_disk(self, model, folder):
        (folder / "adapter_model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, FULL)

    monkeypatch.setattr(Lora, "save", full_disk)
    assert main(full_disk_args(data, copy, "--methods", "lora", "--no-references", "--force")) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("peftbench: error: could not write the adapter of lora-seed0-")
    assert f"into {copy / 'adapters'}: {FULL};" in line
    assert snapshot(copy) == before
    assert adapter_files(copy) == adapters
    assert leftovers(copy) == []


@pytest.fixture
def lora_adapters_cannot_move(monkeypatch):
    """Moving a staged LoRA adapter into place fails, as on a full disk; everything else works."""
    real_rename = Path.rename

    def rename(self, target):
        if self.name.startswith(".staging-lora-"):
            raise OSError(28, "No space left on device")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)


def test_an_adapter_that_cannot_be_moved_into_place_stops_the_sweep_and_the_next_start_resumes(
    finished_sweep, tmp_path, lora_adapters_cannot_move, monkeypatch, capsys
):
    data, _ = finished_sweep
    out = tmp_path / "runs"
    args = full_disk_args(data, out, "--methods", "lora,ia3")
    assert main(args) == 2
    assert error_line(capsys.readouterr().err).startswith(
        "peftbench: error: could not write the adapter of lora-"
    )
    done = {r.method: r for r in read_records(out)}
    assert sorted(done) == ["baseline", "head_only", "majority"]  # the runs before it, nothing of it
    assert sorted(p.name for p in (out / "adapters").iterdir()) == sorted(r.run_id for r in done.values())
    assert leftovers(out) == []
    before = snapshot(out)
    monkeypatch.undo()
    assert main(args) == 0
    after = snapshot(out)
    assert {name: after[name] for name in before} == before  # resumed: those runs not redone
    assert sorted(r.method for r in read_records(out)) == ["baseline", "head_only", "ia3", "lora", "majority"]
    assert all(r.status == "complete" for r in read_records(out))
    assert leftovers(out) == []


def test_settle_keeps_an_earlier_complete_result_and_reports_the_new_failure(tmp_path):
    with ResultStore(tmp_path) as store:
        assert store.take("lora-seed0-abc").mine
        staged = store.staging("lora-seed0-abc")
        staged.mkdir(parents=True)
        (staged / "weights.safetensors").write_bytes(b"first")
        done = RunRecord(
            run_id="lora-seed0-abc", status="complete", model="m", dataset="d", method="lora", seed=0
        )
        assert store.settle(done, staged) is done and done.adapter_path == "adapters/lora-seed0-abc"
        assert not staged.exists() and store.complete("lora-seed0-abc") == done
        assert store.take("lora-seed0-abc").record == done  # complete: skipped
        assert store.take("lora-seed0-abc", force=True).mine
        again = RunRecord(
            run_id="lora-seed0-abc", status="failed", model="m", dataset="d", method="lora", seed=0
        )
        again.fail("failed", "RuntimeError: boom", "train")
        with pytest.warns(RecordWarning, match="its earlier complete record and adapter are kept"):
            kept = store.settle(again, store.staging("lora-seed0-abc"))
        assert kept == done and store.complete("lora-seed0-abc") == done
        assert (tmp_path / "adapters" / "lora-seed0-abc" / "weights.safetensors").read_bytes() == b"first"
        fresh = RunRecord(
            run_id="ia3-seed0-def", status="failed", model="m", dataset="d", method="ia3", seed=0
        )
        (tmp_path / "adapters" / "ia3-seed0-def").mkdir()  # an adapter without a record of it
        assert store.take("ia3-seed0-def").mine
        assert store.settle(fresh.fail("diverged", "loss became nan", "train"), None) is fresh
        assert not (tmp_path / "adapters" / "ia3-seed0-def").exists()
        assert read_record(tmp_path / "records" / "ia3-seed0-def.json").status == "diverged"
    assert leftovers(tmp_path) == []


def test_a_forced_rerun_whose_adapter_cannot_be_moved_keeps_the_earlier_adapter(
    finished_sweep, tmp_path, lora_adapters_cannot_move, capsys
):
    data, out = finished_sweep
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    adapters, before = adapter_files(copy), snapshot(copy)
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(copy),
            "--methods", "lora", "--no-references", "--force", "--quiet"]  # fmt: skip
    assert main(args) == 2  # the disk refused it: stopped, with the folder as it was
    assert error_line(capsys.readouterr().err).startswith(
        "peftbench: error: could not write the adapter of lora-"
    )
    assert snapshot(copy) == before
    assert adapter_files(copy) == adapters
    assert leftovers(copy) == []


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
    assert claimed(tmp_path / "runs") == []  # its claim let go: another sweep may run it now


# --- What an interrupted promotion leaves, and how the next start puts it right ----------------

RUN = "lora-seed0-0123456789ab"


def promote_and_die(out: Path, kill_at: str) -> int:
    """In a forked child: promote a second result of RUN over the first and die by SIGKILL at
    ``kill_at``: "aside" (the earlier adapter set aside), "moved" (the new one moved in), "recorded"
    (its record written, the earlier adapter not yet removed). Returns the child's wait status."""
    child = os.fork()
    if child:
        return os.waitpid(child, 0)[1]
    try:  # the child: never returns into pytest
        real_rename, real_rmtree = Path.rename, shutil.rmtree

        def rename(self, target):
            real_rename(self, target)
            moving = {"aside": self.name == RUN, "moved": self.name.startswith(f".staging-{RUN}.")}
            if moving.get(kill_at):
                os.kill(os.getpid(), signal.SIGKILL)

        def rmtree(path, *args, **kwargs):
            if kill_at == "recorded" and Path(path).name.startswith(".earlier-"):
                os.kill(os.getpid(), signal.SIGKILL)
            real_rmtree(path, *args, **kwargs)

        Path.rename, store_module.shutil.rmtree = rename, rmtree
        promote(out, b"second", "second")
    finally:
        os._exit(1)


def promote(out: Path, content: bytes, note: str) -> None:
    """A complete run RUN with an adapter holding ``content``, promoted as a sweep does."""
    with ResultStore(out) as store:
        assert store.take(RUN, force=True).mine
        staged = store.staging(RUN)
        staged.mkdir(parents=True)
        (staged / "weights.safetensors").write_bytes(content)
        record = RunRecord(run_id=RUN, status="complete", model="m", dataset="d", method="lora", seed=0)
        record.notes.append(note)
        store.settle(record, staged)


@pytest.mark.parametrize(
    ("kill_at", "left", "kept"),
    [
        ("aside", [".earlier", ".staging"], "first"),  # cut off between the two renames: undone
        ("moved", [".earlier"], "first"),  # the new adapter in place, its record not written: undone
        ("recorded", [".earlier"], "second"),  # the record written: the promotion is finished
    ],
)
def test_a_promotion_killed_midway_is_undone_or_finished_by_the_next_start(tmp_path, kill_at, left, kept):
    promote(tmp_path, b"first", "first")
    assert os.WTERMSIG(promote_and_die(tmp_path, kill_at)) == signal.SIGKILL
    names = [p.name for p in (tmp_path / "adapters").iterdir() if p.name.startswith(".")]
    assert sorted(name.split("-")[0] for name in names) == left
    assert claimed(tmp_path) == [RUN]  # the dead sweep's claim, and its journal, are still there

    with ResultStore(tmp_path) as store:  # the next start
        assert store.complete(RUN).notes == [kept]
        assert (tmp_path / "adapters" / RUN / "weights.safetensors").read_bytes() == kept.encode()
        assert leftovers(tmp_path) == []
        if kept == "first":
            assert store.repairs[0] == f"put back the adapter of {RUN} (the new one was never recorded)"
        assert store.take(RUN).record.notes == [kept]


def test_a_leftover_from_an_earlier_peftbench_is_restored_on_start(finished_sweep, tmp_path, capsys):
    """Before claims, an adapter set aside was named ``.earlier-<run id>``, a staging folder
    ``.staging-<run id>``; a sweep killed between the renames left them."""
    data, out = finished_sweep
    copy = tmp_path / "runs"
    shutil.copytree(out, copy)
    adapters, before = adapter_files(copy), snapshot(copy)
    (lora,) = [r for r in read_records(copy) if r.method == "lora"]
    (copy / lora.adapter_path).rename(copy / "adapters" / f".earlier-{lora.run_id}")
    (copy / "adapters" / f".staging-{lora.run_id}").mkdir()
    args = ["run", "--model", "tiny-gpt2", "--dataset", str(data), "--max-steps", "2", "--out", str(copy)]
    assert main([*args, "--methods", "lora", "--no-references"]) == 0
    err = capsys.readouterr().err
    assert (
        f"peftbench: repaired {copy}: put back the adapter of {lora.run_id} from .earlier-{lora.run_id}\n"
        in err
    )
    assert f"peftbench: repaired {copy}: removed .staging-{lora.run_id}, an unfinished save\n" in err
    assert "lora seed 0: skipped, complete record exists" in err
    assert adapter_files(copy) == adapters and snapshot(copy) == before
    assert leftovers(copy) == []


def test_a_live_sweeps_staging_folder_is_left_alone(tmp_path):
    with ResultStore(tmp_path) as running:
        assert running.take(RUN).mine
        staged = running.staging(RUN)
        staged.mkdir(parents=True)
        with ResultStore(tmp_path) as second:  # starts while the first is saving RUN's adapter
            assert second.repairs == [] and staged.is_dir()
            assert second.take(RUN).holder == f"pid {os.getpid()} on {os.uname().nodename}"
        record = RunRecord(run_id=RUN, status="complete", model="m", dataset="d", method="lora", seed=0)
        running.settle(record, staged)
    assert leftovers(tmp_path) == [] and (tmp_path / "adapters" / RUN).is_dir()
