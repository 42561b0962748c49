"""The Ray executor: each run is a Ray task on a share of one GPU of the cluster (one CPU where it
has no GPUs): ``1/N`` of a GPU for ``--runs-per-device N``, so N runs share each GPU.

Imported only for ``--executor ray``, so Ray stays an optional extra.

The driver collects. A worker returns its run's record and the adapter files (and training state)
it saved (in a scratch folder of its own node); a run that continues a saved state is sent it the
same way. The driver — the process running ``peftbench run`` — unpacks the
adapter into the results store's staging folder for the run, and the store promotes it and writes
the record exactly as for the local executor. Why: no shared filesystem is needed (a ``ray://``
client or a cluster of separate disks works the same), one process writes every record, so
resume, kill-safety and keeping an earlier result when a rerun fails are the local executor's,
and a worker that dies cannot leave half a record or half an adapter. The price is that adapters
travel through the object store (small for adapters; a full fine-tune ships a whole model copy).

The sweep context, tokenised splits and the base model included, is put in the object store once
per sweep: no worker tokenises or reads the model from disk (the driver read it once; each task
trains its own copy), so a model folder need not exist on the worker nodes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import ray
import torch
from ray.exceptions import RayError, RayTaskError

from peftbench.batching import TokenizedSplit
from peftbench.environment import describe_environment
from peftbench.errors import PeftbenchError, StorageError, is_storage_error, storage_error
from peftbench.precision import enable_tf32, resolve_precision
from peftbench.records import RunRecord
from peftbench.runs.context import Placement, SweepContext
from peftbench.runs.runner import execute_run
from peftbench.runs.sharing import describe_sharing, free_memory, runs_per_device
from peftbench.runs.spec import RunSpec, lost_record
from peftbench.runs.store import ResultStore
from peftbench.runs.workers import WorkerResult, first_line, read_files, unpack_files, worker_context
from peftbench.version import __version__

#: Driver settings that decide what a run sees, passed on to the workers of a cluster we start
#: or join, so that ``PEFTBENCH_MIRROR=... peftbench run --executor ray`` means what it means locally.
FORWARDED_ENV = (
    "PEFTBENCH_MIRROR",
    "PEFTBENCH_PLUGINS",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_ENDPOINT",
)
PHASE_TIMEOUT_S = 10  # how long to wait for the phase board's answer about a dead worker


@ray.remote(max_retries=0)
def _probe(device_type: str, precision: str) -> dict[str, Any]:
    """Resolve the precision where runs will execute (the driver may have no GPU at all)."""
    device = torch.device(device_type)
    return {
        "precision": resolve_precision(precision, device),
        "peftbench": __version__,
        "environment": _environment(device),  # described where it runs: the driver may lack CUDA
        "free_memory": free_memory(device),  # of the GPU runs will share: the automatic runs per GPU
    }


@ray.remote(num_cpus=0)
class PhaseBoard:
    """The phase each run is in, as its worker last said: what a dead worker's record reports."""

    def __init__(self) -> None:
        self.phases: dict[str, str] = {}

    def enter(self, run_id: str, phase: str) -> None:
        self.phases[run_id] = phase

    def phase(self, run_id: str) -> str | None:
        return self.phases.get(run_id)


@ray.remote(max_retries=0)  # a run whose worker died is recorded as failed, not silently rerun
def _run_on_worker(
    ctx: SweepContext,
    spec: RunSpec,
    board: ray.actor.ActorHandle,
    runs: int,
    resume_files: dict[str, bytes] | None = None,
) -> WorkerResult:
    torch.set_num_threads(_assigned_cpus())  # as many threads as CPUs Ray gave this task
    device = torch.device(ctx.device.type)  # "cuda" is the GPU Ray assigned to this task
    enable_tf32(device)
    scratch = Path(tempfile.mkdtemp(prefix="peftbench-ray-"))
    try:
        sharing = {"runs_per_device": runs} if runs > 1 else {}
        here = worker_context(ctx, device, {**_environment(device), **sharing})
        splits = {name: _writable(getattr(ctx, name)) for name in ("train", "validation", "test")}
        here = dataclasses.replace(here, **splits)
        unpack_files(resume_files, scratch / "resume")
        resume = scratch / "resume" if resume_files is not None else None
        state = scratch / "state" if spec.keep_state else None
        try:
            record = execute_run(here, spec, scratch / "adapter", _reporter(board, spec), resume, state)
        except StorageError as error:  # this node's scratch disk, not the results folder: the run failed
            cause = error.__cause__ or error
            message = f"{type(cause).__name__}: {cause}"
            return WorkerResult(lost_record(here, spec, message, "save on a Ray worker"), None, None)
        return WorkerResult(record, read_files(scratch / "adapter"), read_files(scratch / "state"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class RayExecutor:
    """Runs on a Ray cluster: joined at ``address`` (or ``$RAY_ADDRESS``), else started locally."""

    name = "ray"
    parallel = True

    def __init__(
        self, address: str | None = None, cpus_per_task: float = 1, runs_per_device: int | None = None
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_task = cpus_per_task
        self.asked = runs_per_device  # None: chosen from the model's size and a GPU's free memory
        self.runs = 1
        self.resources: dict[str, float] = {}  # what each run's task asks Ray for
        self._free_memory: int | None = None  # of a GPU, as a worker measured it
        self._started = False  # whether this executor connected, and so must disconnect
        self._shared: tuple[SweepContext, ray.ObjectRef] | None = None
        self._board: ray.actor.ActorHandle | None = None
        self._own_cluster: bool | None = None  # whether it starts a local cluster (decided once)
        self.num_cpus: int | None = None  # the CPUs of a local cluster it starts (None: Ray's choice)

    @property
    def host_cores(self) -> str:
        """A local cluster it starts holds this host's CPUs it was given ("fixed"); a cluster it
        joins is Ray's to schedule ("none")."""
        if self._own_cluster is None:
            self._own_cluster = not (self.address or ray.is_initialized())
        return "fixed" if self._own_cluster else "none"

    def use_threads(self, cap: int, sweeps: int) -> int:
        if self.host_cores == "none":
            return 0
        if not self._started:
            self.num_cpus = cap
        return self.num_cpus or cap

    def start(self, device: str | None, precision: str) -> Placement:
        self._connect()
        cluster = ray.cluster_resources()
        gpus, cpus = cluster.get("GPU", 0), cluster.get("CPU", 0)
        device_type = _device_type(device, gpus)
        self.resources = task_resources(device_type, 1, self.cpus_per_task)
        self._board = PhaseBoard.remote()
        probe = _get(_probe.options(**self.resources).remote(device_type, precision))
        if probe["peftbench"] != __version__:
            raise PeftbenchError(
                f"Ray workers run peftbench {probe['peftbench']} but this driver runs {__version__}: "
                "install the same version on every node"
            )
        self._free_memory = probe["free_memory"]
        where = (
            "the Ray cluster this program joined"
            if not self._started
            else self.address or "a local Ray cluster"
        )
        description = f"  executor: ray on {where} ({gpus:g} GPUs, {cpus:g} CPUs)"
        device_obj = torch.device(device_type)
        return Placement(device_obj, probe["precision"], probe["environment"], description)

    def share_devices(self, ctx: SweepContext) -> str:
        if ctx.device.type != "cuda":  # one run per reserved CPU: sharing one would only split it
            self.runs = 1
            note = " (--runs-per-device applies to GPUs)" if (self.asked or 1) > 1 else ""
            return f"  {self.cpus_per_task:g} CPU per run{note}"
        self.runs = runs_per_device(self.asked, ctx, self._free_memory)
        self.resources = task_resources("cuda", self.runs, self.cpus_per_task)
        return describe_sharing(self.runs, "each GPU")

    def run(
        self, ctx: SweepContext, specs: Sequence[RunSpec], store: ResultStore
    ) -> Iterator[tuple[RunSpec, RunRecord, Path | None]]:
        if not specs:
            return
        task = _run_on_worker.options(**self.resources)
        shared = self._share(ctx)
        pending = {
            task.remote(shared, spec, self._board, self.runs, _state_files(store, spec)): spec
            for spec in specs
        }
        try:
            while pending:
                (done,), _ = ray.wait(list(pending), num_returns=1)
                spec = pending.pop(done)
                yield spec, *self._collect(ctx, spec, done, store)
        finally:  # interrupted (Ctrl-C, an error in the driver): do not leave runs behind
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        self._shared = None
        if self._board is not None:
            ray.kill(self._board)
            self._board = None
        if self._started:
            ray.shutdown()
            self._started = False

    def _connect(self) -> None:
        if ray.is_initialized():  # the caller already joined a cluster: use it as it is
            return
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        own = self.host_cores == "fixed"
        cluster = {"address": "local", "num_cpus": self.num_cpus} if own else {"address": self.address}
        try:
            ray.init(**cluster, runtime_env={"env_vars": env}, logging_level=logging.WARNING)
        except Exception as error:  # ConnectionError, a bad address, a version mismatch, ...
            where = self.address or "a local Ray cluster"
            raise PeftbenchError(f"could not start or join {where}: {first_line(error)}") from error
        self._started = True

    def _share(self, ctx: SweepContext) -> ray.ObjectRef:
        """The context in the object store, once per sweep; workers draw no progress bars."""
        if self._shared is None or self._shared[0] is not ctx:
            self._shared = (ctx, ray.put(dataclasses.replace(ctx, progress=False)))
        return self._shared[1]

    def _collect(
        self, ctx: SweepContext, spec: RunSpec, ref: ray.ObjectRef, store: ResultStore
    ) -> tuple[RunRecord, Path | None]:
        """The run's record and its adapter, unpacked into the store's staging folder for it."""
        try:
            result = ray.get(ref)
        except RayTaskError as error:  # raised by the task outside the run, e.g. a plugin not installed
            cause = error.cause if isinstance(error.cause, BaseException) else error
            message = f"{type(cause).__name__}: {first_line(cause)}"
            return lost_record(ctx, spec, message, "setup on a Ray worker"), None
        except RayError as error:  # the worker process or its node died: killed, out of memory, ...
            message = f"{type(error).__name__}: the Ray worker died mid-run ({first_line(error)})"
            return lost_record(ctx, spec, message, f"{self._last_phase(spec)} on a Ray worker"), None
        staged = store.staging(spec.run_id)
        try:
            unpack_files(result.adapter_files, staged)
            unpack_files(result.state_files, store.state_staging(spec.run_id))
        except OSError as error:
            if is_storage_error(error):  # the results folder refused it: the sweep stops
                shutil.rmtree(staged, ignore_errors=True)
                raise storage_error(f"the adapter of {spec.run_id}", staged.parent, error) from error
            return result.record.fail(
                "failed", f"{type(error).__name__}: {error}", "save on the driver"
            ), staged
        return result.record, staged

    def _last_phase(self, spec: RunSpec) -> str:
        try:
            phase = ray.get(self._board.phase.remote(spec.run_id), timeout=PHASE_TIMEOUT_S)
        except RayError:
            phase = None
        return phase or "an unknown phase"


def _state_files(store: ResultStore, spec: RunSpec) -> dict[str, bytes] | None:
    """The saved training state ``spec`` continues, as bytes to send to its worker (None: none)."""
    saved = store.saved_state(spec.resume)
    return read_files(saved) if saved is not None else None


def task_resources(device_type: str, runs: int, cpus_per_task: float) -> dict[str, float]:
    """What each run's task asks Ray for: ``1/runs`` of a GPU (rounded down to Ray's 0.0001 steps,
    so ``runs`` tasks fit on one GPU) and one CPU; or CPUs alone on a cluster without GPUs."""
    if device_type != "cuda":
        return {"num_cpus": cpus_per_task}
    return {"num_gpus": 1 if runs == 1 else math.floor(10_000 / runs) / 10_000, "num_cpus": 1}


def _device_type(requested: str | None, gpus: float) -> str:
    """``cuda`` when the cluster has GPUs (or one is asked for), else ``cpu``."""
    if requested in (None, "", "auto"):
        return "cuda" if gpus >= 1 else "cpu"
    try:
        kind = torch.device(requested).type
    except RuntimeError as error:
        raise PeftbenchError(f"unknown device '{requested}': use cpu, cuda or cuda:N") from error
    if kind == "cuda" and gpus < 1:
        raise PeftbenchError(f"device '{requested}' was asked for but the Ray cluster has no GPUs")
    if kind not in ("cpu", "cuda"):
        raise PeftbenchError(f"the ray executor runs on cpu or cuda, not '{requested}'")
    return kind


def _get(ref: ray.ObjectRef) -> Any:
    """``ray.get`` that turns a user error raised on a worker back into that one-line error."""
    try:
        return ray.get(ref)
    except RayTaskError as error:
        if isinstance(error.cause, PeftbenchError):
            raise error.cause from None
        raise


def _reporter(board: ray.actor.ActorHandle, spec: RunSpec) -> Callable[[str], None]:
    """Tell the board each phase before it starts (and wait, so a kill cannot overtake the news)."""

    def report(phase: str) -> None:
        with contextlib.suppress(RayError):  # only for a dead worker's record: never fail a run over it
            ray.get(board.enter.remote(spec.run_id, phase), timeout=PHASE_TIMEOUT_S)

    return report


def _writable(split: TokenizedSplit) -> TokenizedSplit:
    """Object-store arrays are read-only views; torch warns when it wraps one, so copy the labels."""
    return TokenizedSplit(split.input_ids, split.labels.copy())


def _assigned_cpus() -> int:
    assigned = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, int(assigned))


def _environment(device: torch.device) -> dict[str, Any]:
    return {**describe_environment(device), "executor": "ray", "node": ray.util.get_node_ip_address()}
