"""The Ray executor on a local 2-CPU Ray cluster: same records as the local executor, crashes isolated."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import peftbench
from conftest import claimed, keyword_folder, registered, sharing_context, snapshot
from fake_plugins import HeadProbe
from peftbench import Method, hookimpl
from peftbench.models import classification_head
from peftbench.records import RecordWarning, read_records
from peftbench.runs.sharing import available_cpus
from peftbench.runs.store import ResultStore

ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install 'peftbench[ray]'")
from peftbench.runs.ray_executor import RayExecutor, task_resources  # noqa: E402  (needs Ray)

TESTS = Path(__file__).resolve().parent
IN_RAY_WORKER = "PEFTBENCH_TEST_IN_RAY_WORKER"  # set for the cluster's workers only, never in pytest
HP = {"lora": {"learning_rate": 1e-2}, "ia3": {"learning_rate": 5e-2}}


class SuddenDeath(Method):
    """Kills its own process in the first training step, as the OOM killer or a segfault would."""

    name = "sudden_death"
    description = "SIGKILLs the Ray worker running it."

    def prepare(self, model, task, hp):
        model.requires_grad_(False)
        head = classification_head(model)
        head.requires_grad_(True)
        head.register_forward_hook(_die)
        return model

    def save(self, model, directory):
        pass

    def load(self, base_model, directory, task, hp):
        return base_model


def _die(*_):
    if not os.environ.get(IN_RAY_WORKER):
        raise RuntimeError("sudden_death only kills Ray workers, never the test process")
    os.kill(os.getpid(), signal.SIGKILL)


class DiesOnceMarked(HeadProbe):
    """A head probe whose Ray worker is killed mid-training once its ``marker`` file exists."""

    name = "dies_once_marked"
    description = "Completes until its marker file exists; then SIGKILLs its Ray worker."
    defaults = {"learning_rate": 1e-2, "marker": ""}

    def prepare(self, model, task, hp):
        model = super().prepare(model, task, hp)
        if Path(hp["marker"]).exists():
            classification_head(model).register_forward_hook(_die)
        return model


class SuddenDeathPlugin:
    @hookimpl
    def register_methods(self, register):
        register(SuddenDeath())
        register(DiesOnceMarked())
        register(WaitsForMarker())


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs whose workers can import this module (for ``SuddenDeath``)."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    ray.init(
        address="local",  # a new cluster of our own, even where one runs already
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": path, IN_RAY_WORKER: "1"}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory) -> Path:
    return keyword_folder(tmp_path_factory.mktemp("keywords"), train=128, validation=32, test=64)


def sweep(keyword_data, out, methods, tuned=(), **options):
    """2 epochs of tiny GPT-2 on the keyword task, seeds 0 and 1, no reference rows.

    Methods in ``tuned`` get their learning rate by successive halving (``tune=True``), on 2 seeds.
    """
    hp = {name: values for name, values in HP.items() if name in methods and name not in tuned}
    hp.update(options.pop("hp", {}))
    options.setdefault("tune", bool(tuned))
    settings = dict(model="tiny-gpt2", dataset=str(keyword_data), epochs=2, seeds=[0, 1], progress=False,
                    tune_seeds=2, extension_limit=0)  # fmt: skip
    return peftbench.run(**{**settings, **options}, methods=methods, out=out, hp=hp, references=False)


@pytest.fixture(scope="module")
def both(cluster, keyword_data, tmp_path_factory):
    """The same sweep through each executor: 2 methods x 2 seeds, lora tuned first (successive
    halving: rounds of runs continuing the saved states of the round before, shipped to the workers).

    Both with one torch thread per run, as each Ray task of one CPU has: on CPUs torch splits its
    reductions by thread count, so results are bit-identical only for the same count.
    """
    outs = {name: tmp_path_factory.mktemp(name) for name in ("local", "ray")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sweep(keyword_data, outs["local"], ["lora", "ia3"], tuned=["lora"], executor="local")
    finally:
        torch.set_num_threads(threads)
    sweep(keyword_data, outs["ray"], ["lora", "ia3"], tuned=["lora"], executor="ray")
    return outs


def test_ray_records_equal_the_local_executors_for_the_same_seeds(both):
    local = {r.run_id: r for r in read_records(both["local"])}
    remote = {r.run_id: r for r in read_records(both["ray"])}
    assert sorted(local) == sorted(remote)  # the same run ids: the same runs, settings included
    finals = sorted((r.method, r.stage) for r in remote.values() if r.stage == "final")
    assert finals == sorted([("lora", "final"), ("ia3", "final")] * 2)
    tuned = [r for r in remote.values() if r.stage == "tune"]
    assert {r.method for r in tuned} == {"lora"} and {r.training["until"] for r in tuned} > {None}  # rounds
    continued = [r for r in remote.values() if r.training and r.training["continued_from"]]
    assert continued and all(r.training["continued_from"] in remote for r in continued)
    assert {r.training["continued_from"] is not None for r in remote.values() if r.method == "lora"
            and r.stage == "final"} == {True}  # fmt: skip
    for run_id, mine in remote.items():
        theirs = local[run_id]
        assert mine.status == theirs.status == "complete", mine.error
        assert mine.metrics == theirs.metrics  # exactly, losses included
        assert mine.hyperparameters == theirs.hyperparameters
        assert mine.tuning == theirs.tuning  # the same choice from the same candidates
        assert mine.train_config == theirs.train_config
        assert mine.environment["executor"] == "ray"
        assert mine.environment["torch_threads"] == theirs.environment["torch_threads"] == 1
        if mine.stage == "tune":
            assert mine.adapter_path is None and not mine.predictions
            continue
        assert mine.predictions == theirs.predictions
        assert mine.reload["predictions_identical"] is True
        assert mine.adapter_path == theirs.adapter_path == f"adapters/{run_id}"
        ours, reference = both["ray"] / mine.adapter_path, both["local"] / theirs.adapter_path
        assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in reference.iterdir())
        weights = "adapter_model.safetensors"
        assert (ours / weights).read_bytes() == (reference / weights).read_bytes()


def test_a_ray_sweep_resumes_a_local_one_by_skipping_every_finished_run(both, keyword_data, capfd):
    before = {p.name: p.read_bytes() for p in (both["local"] / "records").glob("*.json")}
    methods = ["lora", "ia3"]
    board = sweep(keyword_data, both["local"], methods, tuned=["lora"], executor="ray", progress=True)
    assert capfd.readouterr().err.count("skipped, complete record exists") == len(before)
    assert {p.name: p.read_bytes() for p in (both["local"] / "records").glob("*.json")} == before
    assert len(board.records) == len(before)


@pytest.mark.slow  # a minute on two cores; the failure path is covered locally too
def test_a_task_killed_mid_run_is_recorded_as_failed_and_the_others_complete(cluster, keyword_data, tmp_path):
    with registered(SuddenDeathPlugin()):
        board = sweep(keyword_data, tmp_path, ["sudden_death", "lora"], executor="ray")
    records = {(r.method, r.seed): r for r in board.records}
    for seed in (0, 1):
        dead, alive = records["sudden_death", seed], records["lora", seed]
        assert dead.status == "failed"
        assert dead.error.startswith("WorkerCrashedError: the Ray worker died mid-run")
        assert dead.error.endswith("(during train on a Ray worker)")
        assert not (tmp_path / "adapters" / dead.run_id).exists()
        assert alive.status == "complete" and (tmp_path / alive.adapter_path).is_dir()
    assert len(read_records(tmp_path)) == 4  # the driver wrote a record for each run


def test_a_forced_rerun_whose_worker_dies_keeps_the_earlier_record_and_adapter(
    cluster, keyword_data, tmp_path
):
    """A lost run (its worker killed) must never cost the result of an earlier complete run."""
    marker = tmp_path / "die-now"
    options = dict(executor="ray", seeds=[0], hp={"dies_once_marked": {"marker": str(marker)}})
    with registered(SuddenDeathPlugin()):
        first = sweep(keyword_data, tmp_path / "runs", ["dies_once_marked"], **options)
        (done,) = first.records
        assert done.status == "complete" and (tmp_path / "runs" / done.adapter_path).is_dir()
        records = snapshot(tmp_path / "runs")
        adapter = {p.name: p.read_bytes() for p in (tmp_path / "runs" / done.adapter_path).iterdir()}
        marker.touch()
        with pytest.warns(RecordWarning, match="its earlier complete record and adapter are kept"):
            again = sweep(keyword_data, tmp_path / "runs", ["dies_once_marked"], force=True, **options)
    (lost,) = again.incomplete_runs()
    assert lost.run_id == done.run_id and lost.status == "failed"
    assert lost.error.startswith("WorkerCrashedError: the Ray worker died mid-run")
    assert snapshot(tmp_path / "runs") == records
    assert {p.name: p.read_bytes() for p in (tmp_path / "runs" / done.adapter_path).iterdir()} == adapter
    assert sorted(p.name for p in (tmp_path / "runs" / "adapters").iterdir()) == [done.run_id]  # no staging


@pytest.mark.slow  # a minute on two cores; the failure path is covered locally too
def test_reference_rows_whose_adapter_is_an_empty_folder_complete_on_ray(cluster, keyword_data, tmp_path):
    """The untuned baseline saves nothing: its (empty) adapter folder still travels and is kept."""
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_data), methods="lora", out=tmp_path, max_steps=1,
        executor="ray", progress=False,
    )  # fmt: skip
    records = {r.method: r for r in board.records}
    assert set(records) == {"baseline", "majority", "head_only", "lora"}
    for record in records.values():
        assert record.status == "complete", record.error
        assert (tmp_path / record.adapter_path).is_dir() and record.reload["predictions_identical"]
    assert list((tmp_path / records["baseline"].adapter_path).iterdir()) == []


def test_runs_sharing_a_gpu_each_ask_ray_for_a_fraction_of_it():
    assert task_resources("cuda", 1, 1) == {"num_gpus": 1, "num_cpus": 1}
    assert task_resources("cuda", 2, 1) == {"num_gpus": 0.5, "num_cpus": 1}
    assert 3 * task_resources("cuda", 3, 1)["num_gpus"] <= 1  # three such tasks fit on one GPU
    assert task_resources("cpu", 1, 2) == {"num_cpus": 2}
    asked = RayExecutor(runs_per_device=4)
    assert asked.share_devices(sharing_context("cuda")) == "  4 runs at a time on each GPU"
    assert asked.resources == {"num_gpus": 0.25, "num_cpus": 1}
    automatic = RayExecutor()
    automatic._free_memory = 24 * 10**9  # as the probe on a GPU worker measured it
    assert automatic.share_devices(sharing_context("cuda")) == "  4 runs at a time on each GPU"
    assert automatic.resources == {"num_gpus": 0.25, "num_cpus": 1}


def test_on_a_cluster_without_gpus_each_run_keeps_its_cpu():
    executor = RayExecutor(runs_per_device=2)
    executor.resources = task_resources("cpu", 1, 1)
    line = executor.share_devices(sharing_context("cpu"))
    assert line == "  1 CPU per run (--runs-per-device applies to GPUs)"
    assert executor.resources == {"num_cpus": 1} and executor.runs == 1


# --- Sweeps sharing one results folder, the driver writing it ---------------------------------

RESULT = re.compile(r"^\[\d+/(\d+)\] [^:]+: (run by pid \d+ on \S+: )?(\w+)", re.M)


def cli_sweep(keyword_data: Path, out: Path, *more: str) -> subprocess.Popen:
    """A sweep like ``sweep``'s, from the command line in another process."""
    command = [sys.executable, "-m", "peftbench.cli", "run", "--model", "tiny-gpt2", "--dataset",
               str(keyword_data), "--seeds", "0,1", "--epochs", "2", "--out", str(out), *more]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


class WaitsForMarker(HeadProbe):
    """A head probe whose run does not start training until its ``marker`` file exists."""

    name = "waits_for_marker"
    description = "Waits for its marker file, then trains like head_probe."
    defaults = {"learning_rate": 1e-2, "marker": ""}

    def prepare(self, model, task, hp):
        deadline = time.time() + 300
        while not Path(hp["marker"]).exists():
            if time.time() > deadline:
                raise RuntimeError(f"{hp['marker']} never appeared")
            time.sleep(0.05)
        return super().prepare(model, task, hp)


def ran_here(err: str, runs: int) -> int:
    """How many of its ``runs`` runs a sweep's progress says it ran itself (all complete)."""
    results = RESULT.findall(err)
    assert len(results) == runs and {planned for planned, _, _ in results} == {str(runs)}, err
    assert {result for _, _, result in results} <= {"accuracy", "skipped"}, err
    return sum(1 for _, by, result in results if not by and result == "accuracy")


def shared_folder_is_whole(out: Path, runs: int) -> None:
    """One complete record per run, its adapter beside it, nothing left over."""
    records = read_records(out)
    assert len(list((out / "records").iterdir())) == len(records) == runs
    assert all(r.status == "complete" and r.reload["predictions_identical"] for r in records)
    assert sorted(p.name for p in (out / "adapters").iterdir()) == sorted(r.run_id for r in records)
    assert claimed(out) == []


def wait_for(condition, process: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while not condition():
        assert process.poll() is None, process.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_a_local_and_a_ray_sweep_into_one_folder_run_each_run_once(cluster, keyword_data, tmp_path, capfd):
    """The local sweep (one run at a time) claims its first run, and waits to start it while a
    sweep here runs with every core (the test, standing in for one); the Ray sweep meanwhile takes
    the other runs. Each then uses the other's records."""
    out = tmp_path / "runs"
    busy = ResultStore(out)  # a sweep on this host using more than its share of the cores
    busy.claims.declare(threads=available_cpus() + 1)
    command = ["--methods", "lora,ia3", "--no-references", "--hp", "lora.learning_rate=0.01",
               "--hp", "ia3.learning_rate=0.05"]  # fmt: skip
    local = cli_sweep(keyword_data, out, *command)
    wait_for(lambda: len(claimed(out)) == 1, local)

    def let_the_local_sweep_go() -> None:  # once the Ray sweep holds runs of its own
        deadline = time.time() + 300
        while len(claimed(out)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        busy.close()

    gate = threading.Thread(target=let_the_local_sweep_go)
    gate.start()
    try:
        sweep(keyword_data, out, ["lora", "ia3"], executor="ray", progress=True)
    finally:
        gate.join()
    ray_err = capfd.readouterr().err
    local_err = local.communicate(timeout=600)[1]
    assert local.returncode == 0, local_err
    assert f"waiting for pid {os.getpid()} on {os.uname().nodename} to end its current run" in local_err
    assert ran_here(local_err, 4) == 1 and ran_here(ray_err, 4) == 3, (local_err, ray_err)
    assert f"run by pid {local.pid} on " in ray_err and f"run by pid {os.getpid()} on " in local_err
    shared_folder_is_whole(out, 4)


#: Another Ray driver, joined to the test's cluster: waits_for_marker, seed 0 only.
DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import ray, peftbench
from conftest import registered
from test_ray_executor import SuddenDeathPlugin
ray.init(address={address!r}, runtime_env={{"env_vars": {{"PYTHONPATH": {tests!r}}}}}, logging_level=30)
with registered(SuddenDeathPlugin()):
    peftbench.run(model="tiny-gpt2", dataset={data!r}, methods=["waits_for_marker"], seeds=[0], epochs=2,
                  references=False, hp={{"waits_for_marker": {{"marker": {marker!r}}}}}, out={out!r},
                  executor="ray")
"""


@pytest.mark.slow
def test_two_ray_drivers_into_one_folder_run_each_run_once(
    cluster, keyword_data, tmp_path, capfd, monkeypatch
):
    """The other driver's run waits for a marker that appears once this driver found it claimed;
    this driver runs seed 1 itself and uses the other's record of seed 0."""
    out, marker = tmp_path / "runs", tmp_path / "go"
    address = ray.get_runtime_context().gcs_address  # the cluster this test's driver joined
    script = DRIVER.format(tests=str(TESTS), address=address, data=str(keyword_data), marker=str(marker),
                           out=str(out))  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    other = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env)
    wait_for(lambda: len(claimed(out)) == 1, other)
    take = ResultStore.take

    def take_and_open_the_gate(store, run_id, force=False):
        turn = take(store, run_id, force)
        if turn.holder is not None:
            marker.touch()
        return turn

    monkeypatch.setattr(ResultStore, "take", take_and_open_the_gate)
    hp = {"waits_for_marker": {"marker": str(marker)}}
    with registered(SuddenDeathPlugin()):
        sweep(keyword_data, out, ["waits_for_marker"], hp=hp, executor="ray", progress=True)
    ray_err = capfd.readouterr().err
    other_err = other.communicate(timeout=600)[1]
    assert other.returncode == 0, other_err
    assert ran_here(other_err, 1) == 1 and ran_here(ray_err, 2) == 1, (other_err, ray_err)
    assert f"waits_for_marker seed 0: run by pid {other.pid} on " in ray_err
    shared_folder_is_whole(out, 2)
