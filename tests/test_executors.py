"""Choosing an executor (the errors people see, with or without Ray installed), and the local
executor running several runs at once on one device."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

import peftbench
from conftest import claimed, keyword_folder, registered, sharing_context
from fake_plugins import HeadProbe, MethodsPlugin, SuddenDeath
from peftbench.cli import main
from peftbench.errors import PeftbenchError
from peftbench.plugins import RegisteredMethod, collect_methods
from peftbench.records import read_records
from peftbench.runs import worker_processes
from peftbench.runs.context import build_context
from peftbench.runs.executors import LocalExecutor, get_executor
from peftbench.runs.sharing import (
    MAX_RUNS_PER_DEVICE,
    automatic_runs_per_device,
    run_memory_bytes,
    threads_per_run,
)
from peftbench.runs.spec import make_spec
from peftbench.runs.store import STAGING_PREFIX, ResultStore
from peftbench.settings import sweep_config


def test_local_is_the_default_executor():
    assert isinstance(get_executor(), LocalExecutor)


def test_an_unknown_executor_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(PeftbenchError, match="unknown executor 'dask'; known executors: local, ray"):
        get_executor("dask")
    assert main(["run", "--model", "tiny-gpt2", "--executor", "dask", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error == "peftbench: error: unknown executor 'dask'; known executors: local, ray\n"


def test_ray_without_ray_installed_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now fails as if not installed
    assert main(["run", "--model", "tiny-gpt2", "--executor", "ray", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "peftbench: error: Ray is not installed: pip install 'peftbench[ray]'\n"


def test_a_ray_address_needs_the_ray_executor():
    with pytest.raises(PeftbenchError, match="--ray-address is only used with --executor ray"):
        get_executor("local", ray_address="ray://head:10001")


@pytest.mark.parametrize(
    ("device", "free", "parameters", "runs"),
    [
        ("cpu", 80 * 10**9, 124_000_000, 1),  # runs on the CPU would only split its cores
        ("cuda", None, 124_000_000, 1),  # no number for the free memory: one at a time
        ("cuda", 80 * 10**9, 124_000_000, MAX_RUNS_PER_DEVICE),  # GPT-2 small on an 80 GB card: capped
        ("cuda", 24 * 10**9, 124_000_000, 4),  # ... on a 24 GB card: 21.6 GB usable / 4.95 GB a run
        ("cuda", 80 * 10**9, 350_000_000, 5),  # GPT-2 medium: 72 GB usable / 13.0 GB a run
        ("cuda", 80 * 10**9, 7_000_000_000, 1),  # a 7B model does not fit twice (nor, by this, once)
        ("cuda", 2 * 10**9, 124_000_000, 1),  # never fewer than one
    ],
)
def test_automatic_runs_per_device_from_the_free_memory_and_the_models_size(device, free, parameters, runs):
    tokens = 32 * 128  # the default batch size and max length
    assert automatic_runs_per_device(device, free, parameters, tokens) == runs


def test_one_runs_memory_estimate_is_generous_for_gpt2_small():
    assert 4.9e9 < run_memory_bytes(124_000_000, 32 * 128) < 5.0e9  # it peaks near 3.5 GB in fp32


def test_runs_on_one_machine_split_its_cpus():
    cpus = len(os.sched_getaffinity(0))
    assert threads_per_run(1) == cpus
    assert threads_per_run(2) == max(1, cpus // 2)
    assert threads_per_run(10 * cpus) == 1


def test_the_local_executor_runs_one_at_a_time_on_the_cpu_unless_asked_and_says_so():
    alone, shared = LocalExecutor(), LocalExecutor(runs_per_device=2)
    assert alone.share_devices(sharing_context("cpu")) == "  1 run at a time on cpu"
    assert not alone.parallel  # the sweep hands it one run at a time, in the plan's order
    assert shared.share_devices(sharing_context("cpu")) == "  2 runs at a time on cpu"
    assert shared.parallel  # the sweep hands it whole batches
    assert isinstance(get_executor("local", runs_per_device=3), LocalExecutor)
    assert get_executor("local", runs_per_device=3).asked == 3


def test_runs_per_device_is_a_run_option_with_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--runs-per-device RUNS_PER_DEVICE runs that execute at the same time on each device" in text
    assert "1 on the CPU" in text


@pytest.mark.parametrize("value", ["0", "-1"])
def test_runs_per_device_below_one_is_refused_in_one_line(tmp_path, capsys, value):
    argv = ["run", "--model", "tiny-gpt2", "--out", str(tmp_path / "runs"), "--runs-per-device", value]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"peftbench: error: setting runs_per_device={value} is out of range: use at least 1\n"
    )
    assert not (tmp_path / "runs" / "records").exists()
    with pytest.raises(PeftbenchError, match="runs_per_device=2.5 must be a whole number"):
        peftbench.run(model="tiny-gpt2", out=tmp_path, runs_per_device=2.5)


def test_ctrl_c_stops_the_worker_processes_and_leaves_no_staging(keyword_dataset, tmp_path, monkeypatch):
    config = sweep_config(model="tiny-gpt2", dataset=str(keyword_dataset), max_steps=1, out=tmp_path)
    executor = LocalExecutor(runs_per_device=2)
    ctx = build_context(config, executor.start("cpu", "fp32"))
    executor.share_devices(ctx)
    entry = collect_methods().get("lora")
    specs = [make_spec(ctx, entry, entry.method.hyperparameters(), seed) for seed in (0, 1)]
    store = ResultStore(tmp_path)
    assert all(store.take(spec.run_id).mine for spec in specs)

    def interrupted(_):  # Ctrl-C while both runs are saving their adapters
        for spec in specs:
            staged = store.staging(spec.run_id)
            assert staged.name.startswith(f"{STAGING_PREFIX}{spec.run_id}.")  # the claim's own folder
            staged.mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(worker_processes, "wait", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            list(executor.run(ctx, specs, store))
        assert list((tmp_path / "adapters").iterdir()) == []
        assert multiprocessing.active_children() == []  # both workers stopped
    finally:
        executor.close()
        store.close()
    assert claimed(tmp_path) == []  # their claims were let go


def test_a_run_that_cannot_reach_a_worker_process_is_a_failed_record(keyword_dataset, tmp_path):
    config = sweep_config(model="tiny-gpt2", dataset=str(keyword_dataset), max_steps=1, out=tmp_path)
    executor = LocalExecutor(runs_per_device=2)
    ctx = build_context(config, executor.start("cpu", "fp32"))
    executor.share_devices(ctx)
    method = HeadProbe()
    method.score = lambda logits: logits  # a lambda does not pickle
    entry = RegisteredMethod(method, "peftbench-test 0.0")
    spec = make_spec(ctx, entry, method.hyperparameters(), seed=0)
    with ResultStore(tmp_path) as store:
        assert store.take(spec.run_id).mine
        try:
            ((done, record, staged),) = executor.run(ctx, [spec], store)
        finally:
            executor.close()
    assert done is spec and record.status == "failed" and staged is None
    assert "pickle" in record.error  # pickle's own words, then where it happened:
    assert record.error.endswith("(during setup in a worker process)")
    assert multiprocessing.active_children() == []  # no worker was started for it


@pytest.fixture(scope="module")
def shared_and_alone(tmp_path_factory):
    """lora and ia3, seeds 0 and 1: in this process one at a time (with the threads each worker
    gets), and 2 at a time in worker processes, with a method whose worker is killed mid-run.

    Returns both results folders and the shared sweep's progress output."""
    root = tmp_path_factory.mktemp("sharing")
    data = keyword_folder(root / "data", train=96, validation=32, test=32)
    hp = {"lora": {"learning_rate": 1e-2}, "ia3": {"learning_rate": 5e-2}}
    settings = dict(model="tiny-gpt2", dataset=str(data), seeds=[0, 1], max_steps=4, hp=hp, references=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_run(2))
    try:
        peftbench.run(**settings, methods="lora,ia3", out=root / "alone", progress=False)
    finally:
        torch.set_num_threads(threads)
    progress = io.StringIO()
    with registered(MethodsPlugin(SuddenDeath())), contextlib.redirect_stderr(progress):
        peftbench.run(**settings, methods="lora,sudden_death,ia3", out=root / "shared", runs_per_device=2)
    return root / "alone", root / "shared", progress.getvalue()


@pytest.mark.slow
def test_two_runs_per_device_give_the_records_of_one_at_a_time(shared_and_alone):
    alone, shared, progress = shared_and_alone
    assert "  2 runs at a time on cpu\n" in progress
    ours = {r.run_id: r for r in read_records(shared) if r.method != "sudden_death"}
    theirs = {r.run_id: r for r in read_records(alone)}
    assert sorted(ours) == sorted(theirs) and len(ours) == 4  # the same runs, settings included
    for run_id, mine in ours.items():
        reference = theirs[run_id]
        assert mine.status == reference.status == "complete", mine.error
        assert mine.predictions == reference.predictions
        assert mine.metrics == pytest.approx(reference.metrics, abs=1e-5)
        assert mine.reload["predictions_identical"] is True
        assert mine.environment["runs_per_device"] == 2
        assert mine.environment["torch_threads"] == threads_per_run(2)
        assert mine.adapter_path == reference.adapter_path == f"adapters/{run_id}"
        weights = "adapter_model.safetensors"
        a = load_file(shared / mine.adapter_path / weights)
        b = load_file(alone / reference.adapter_path / weights)
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[key], b[key], atol=1e-5) for key in a)


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_a_failed_record_and_the_other_runs_complete(shared_and_alone):
    _, shared, progress = shared_and_alone
    records = {(r.method, r.seed): r for r in read_records(shared)}
    assert len(records) == 6
    for seed in (0, 1):
        dead = records["sudden_death", seed]
        assert dead.status == "failed"
        assert dead.error == (
            "WorkerDied: the worker process died mid-run (killed by SIGKILL) "
            "(during train in a worker process)"
        )
        assert records["lora", seed].status == records["ia3", seed].status == "complete"
    assert sorted(p.name for p in (shared / "adapters").iterdir()) == sorted(
        r.run_id for r in records.values() if r.status == "complete"
    )  # no staging folder, nothing for the dead runs
    assert progress.count("FAILED: WorkerDied") == 2
    assert multiprocessing.active_children() == []  # the sweep stopped its workers
