"""Claims: several sweeps writing one results folder run each run once, a killed sweep's claims are
taken over at once, another host's once its heartbeat stops, and the record says so."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import peftbench
from conftest import claimed, keyword_folder
from peftbench.batching import tokenize_split
from peftbench.data import DatasetSpec, load_splits
from peftbench.errors import PeftbenchError
from peftbench.evaluation import evaluate_model
from peftbench.models import load_tokenizer, resolve_model
from peftbench.plugins import collect_methods
from peftbench.records import RecordWarning, RunRecord, read_records
from peftbench.runs.sharing import available_cpus
from peftbench.runs.store import ResultStore

RUN = "lora-seed0-0123456789ab"
HOST = os.uname().nodename


def finished(run_id: str = RUN, note: str = "") -> RunRecord:
    record = RunRecord(run_id=run_id, status="complete", model="m", dataset="d", method="lora", seed=0)
    record.notes = [note] if note else []
    return record


def settle(store: ResultStore, run_id: str = RUN, note: str = "") -> RunRecord:
    """Finish ``run_id``, which ``store`` holds, with an adapter folder and a complete record."""
    staged = store.staging(run_id)
    staged.mkdir(parents=True)
    (staged / "weights.safetensors").write_bytes(b"trained")
    return store.settle(finished(run_id, note), staged)


def test_a_run_another_sweep_holds_is_waited_for_and_its_record_used(tmp_path):
    with ResultStore(tmp_path) as first, ResultStore(tmp_path) as second:
        assert first.take(RUN).mine
        for force in (False, True):  # even a forced sweep does not run it a second time
            turn = second.take(RUN, force=force)
            assert turn.holder == f"pid {os.getpid()} on {HOST}" and turn.record is None
        settle(first, note="run by the first sweep")
        turn = second.take(RUN, force=True)
        assert turn.by == f"pid {os.getpid()} on {HOST}"
        assert turn.record.notes == ["run by the first sweep"]
        assert not (tmp_path / "claims" / f"{RUN}.lock").exists()  # no claim left on it


def test_a_claim_released_without_a_record_is_run_by_the_sweep_that_waited(tmp_path):
    with ResultStore(tmp_path) as first, ResultStore(tmp_path) as second:
        assert first.take(RUN).mine
        assert second.take(RUN).holder is not None
        first.close()  # interrupted (Ctrl-C) before its record: the claim is let go
        assert second.take(RUN).mine
        assert settle(second).notes == []  # let go, not taken over


def test_the_claims_of_a_killed_sweep_are_taken_over_at_once_and_its_records_say_so(tmp_path):
    child = os.fork()
    if not child:
        try:  # a sweep that claims the run, then is killed with SIGKILL mid-run
            store = ResultStore(tmp_path)
            assert store.take(RUN).mine
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    assert os.WTERMSIG(os.waitpid(child, 0)[1]) == signal.SIGKILL
    assert (tmp_path / "claims" / f"{RUN}.lock").exists()  # left behind
    with ResultStore(tmp_path) as store:
        assert store.take(RUN).mine  # at once: its process is gone from this host
        record = settle(store)
    assert record.notes == [f"claim taken over from pid {child} on {HOST}, which no longer runs"]
    with ResultStore(tmp_path) as store:
        assert store.complete(RUN).notes == record.notes


def test_the_empty_claim_of_a_sweep_killed_as_it_claimed_the_run_is_taken_over_at_once(tmp_path):
    marker = tmp_path / "claims" / f"{RUN}.lock"
    marker.parent.mkdir()
    marker.touch()  # killed between creating its claim and writing who it is
    with ResultStore(tmp_path) as store:
        assert store.take(RUN).mine  # not waited for: filelock alone would wait for it forever
        record = settle(store)
    assert record.notes == [
        "claim taken over from a sweep killed as it claimed the run, before it named itself"
    ]


def test_a_claim_from_another_host_is_taken_over_once_its_heartbeat_stops(tmp_path):
    marker = tmp_path / "claims" / f"{RUN}.lock"
    marker.parent.mkdir()
    marker.write_text("filelock/2\npid=4242\nhost=node7\nmode=lease\ntoken=0a1b2c\nduration=0.5\n")
    with ResultStore(tmp_path, claim_timeout=0.5) as store:
        for _ in range(4):  # its heartbeat goes on for longer than the timeout: it stays node7's
            assert store.take(RUN).holder == "pid 4242 on node7"
            time.sleep(0.3)
            os.utime(marker, (time.time(), time.time()))
        assert store.take(RUN).holder == "pid 4242 on node7"
        time.sleep(0.6)  # no heartbeat for longer than the timeout
        assert store.take(RUN).mine
        record = settle(store)
    gone = "pid 4242 on node7, whose claim went 0.5 s without a heartbeat"
    assert record.notes == [f"claim taken over from {gone}"]


def test_a_claim_is_kept_alive_by_its_heartbeat_while_the_run_goes_on(tmp_path):
    with ResultStore(tmp_path, 0.3) as running, ResultStore(tmp_path, 0.3) as other:
        assert running.take(RUN).mine
        marker = tmp_path / "claims" / f"{RUN}.lock"
        renewed = marker.stat().st_mtime_ns
        for _ in range(3):  # well past the timeout: the claim is renewed, never taken over
            time.sleep(0.3)
            assert other.take(RUN).holder is not None
        assert marker.stat().st_mtime_ns > renewed
        settle(running)


def test_a_sweep_whose_claim_was_taken_over_meanwhile_keeps_nothing_of_its_run(tmp_path):
    with ResultStore(tmp_path) as stalled, ResultStore(tmp_path) as other:
        assert stalled.take(RUN).mine
        (tmp_path / "claims" / f"{RUN}.lock").unlink()  # as when its heartbeat stopped for too long
        assert other.take(RUN).mine
        with pytest.warns(RecordWarning, match=f"another sweep took over {RUN} while it ran here"):
            settle(stalled, note="stalled")
        assert settle(other, note="other").notes == ["other"]
        assert other.complete(RUN).notes == ["other"]
        assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == [RUN]


def test_sweeps_whose_claims_time_out_differently_are_refused_at_once(tmp_path):
    with ResultStore(tmp_path, claim_timeout=600), pytest.raises(PeftbenchError) as refused:
        ResultStore(tmp_path, claim_timeout=60)
    assert str(refused.value) == (
        f"results folder {tmp_path} is also written by pid {os.getpid()} on {HOST}, whose claims time out "
        "after 600 s, but this sweep's --claim-timeout is 60 s: give every sweep writing one folder the "
        "same --claim-timeout"
    )
    with ResultStore(tmp_path, claim_timeout=60):  # alone again: its own timeout is the folder's
        pass


# --- Two sweeps started together --------------------------------------------------------------

SEEDS = "0,1"
RUNS = 5 * 2  # baseline, majority, head_only, lora, ia3: two seeds each
PROGRESS = re.compile(r"^\[\d+/(\d+)\] [^:]+: (run by pid (\d+) on \S+: )?(\w+)", re.M)


def test_two_sweeps_started_together_into_one_folder_run_each_run_once(tmp_path):
    data = keyword_folder(tmp_path / "data", train=96, validation=32, test=32)
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "peftbench.cli", "run", "--model", "tiny-gpt2", "--dataset", str(data),
               "--methods", "lora,ia3", "--seeds", SEEDS, "--max-steps", "2", "--out", str(out),
               "--no-inference-timing", "--curve-points", "0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Both start while a sweep here (the test, standing in for one) uses more than its share of the
    # cores: each claims a run, then waits for its share; once both hold one, the cores are theirs.
    busy = ResultStore(out)
    busy.claims.declare(threads=available_cpus() + 1)
    sweeps = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
              for _ in range(2)]  # fmt: skip
    deadline = time.time() + 300
    while len(claimed(out)) < 2 and time.time() < deadline and all(s.poll() is None for s in sweeps):
        time.sleep(0.05)
    busy.close()
    errs = [sweep.communicate(timeout=600)[1] for sweep in sweeps]
    assert [sweep.returncode for sweep in sweeps] == [0, 0], errs
    waiting = f"waiting for pid {os.getpid()} on {HOST} to end its current run"
    assert all(waiting in err for err in errs), errs

    ran_here = []
    for err, other in zip(errs, reversed(sweeps), strict=True):
        lines = PROGRESS.findall(err)  # (planned, "run by ...", its pid, first word of the result)
        assert len(lines) == RUNS and {planned for planned, *_ in lines} == {str(RUNS)}, err
        here = [line for line in lines if not line[1] and line[3] == "accuracy"]
        there = [line for line in lines if line[1]]  # waited for, then used
        done = [line for line in lines if line[3] == "skipped"]  # complete before this sweep got to it
        assert len(here) + len(there) + len(done) == RUNS
        assert {pid for _, _, pid, _ in there} <= {str(other.pid)}
        assert {result for *_, result in there} <= {"accuracy"}  # complete
        if there:
            summary = f"of {RUNS} runs, {len(here)} ran here and {len(there)} by pid {other.pid}"
            assert f"peftbench: {summary} on {HOST}\n" in err
        ran_here.append(len(here))
    assert min(ran_here) >= 1 and sum(ran_here) == RUNS  # both worked, and each run was run once

    records = read_records(out)
    assert len(list((out / "records").iterdir())) == len(records) == RUNS  # one record per run
    assert all(record.status == "complete" for record in records)
    assert any(record.environment.get("sweeps_on_host") == 2 for record in records)  # shared the cores
    assert sorted(p.name for p in (out / "adapters").iterdir()) == sorted(r.run_id for r in records)
    assert [p.name for p in (out / "claims").rglob("*") if p.is_file()] == [".lock"]
    assert_adapters_reload_to_the_recorded_predictions(out, records)


def assert_adapters_reload_to_the_recorded_predictions(out: Path, records: list[RunRecord]) -> None:
    spec = resolve_model("tiny-gpt2")
    tokenizer = load_tokenizer(spec)
    data = load_splits(DatasetSpec(records[0].dataset))
    test = tokenize_split(tokenizer, data.test, 128)
    registry = collect_methods()
    for record in records:
        assert record.reload["predictions_identical"] is True
        base = peftbench.models.load_model(spec, data.label_names, record.seed, tokenizer.pad_token_id)
        method = registry.get(record.method).method
        model = method.load(base, out / record.adapter_path, None, record.hyperparameters)
        result = evaluate_model(
            model, test, data.task, data.label_names, 128, torch.device("cpu"), tokenizer.pad_token_id
        )
        assert result.predictions.tolist() == record.predictions, record.run_id
