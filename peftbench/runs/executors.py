"""Executors: who runs a batch of independent runs, one after another here or spread over a cluster.

An executor only decides where the runs of a batch execute and hands back, as each finishes, its
record and the folder its adapter was staged in; the sweep decides everything else and the
results store keeps the results. ``local`` runs them in this process, in order, or with
``--runs-per-device N`` N at a time in worker processes; ``ray`` (an optional extra, imported
only when asked for) makes each run a Ray task.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import torch

from peftbench.environment import describe_environment, pick_device
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.precision import enable_tf32, resolve_precision
from peftbench.records import RunRecord
from peftbench.runs.context import Placement, SweepContext
from peftbench.runs.runner import execute_run
from peftbench.runs.sharing import available_cpus, describe_sharing, free_memory, runs_per_device
from peftbench.runs.spec import RunSpec
from peftbench.runs.store import ResultStore
from peftbench.runs.worker_processes import WorkerProcesses, refuse_inside_worker

EXECUTORS = ("local", "ray")
RAY_MISSING = "Ray is not installed: pip install 'peftbench[ray]'"

#: What an executor yields per run: the spec, its record, and where its adapter was staged.
Finished = tuple[RunSpec, RunRecord, Path | None]


class Executor(Protocol):
    name: str
    #: True when the runs of a batch execute at the same time: the sweep then batches every
    #: method's tuning candidates together, then every final run, instead of one method at a time.
    parallel: bool
    #: How many runs share each device, as ``share_devices`` decided (1 until it has).
    runs: int
    #: Whether its runs use this host's cores (``peftbench.runs.cores``): "shared", "fixed" or "none".
    host_cores: str

    def start(self, device: str | None, precision: str) -> Placement: ...

    def share_devices(self, ctx: SweepContext) -> str:
        """Decide how many runs share each device, now that the model is known (before any run,
        and before ``parallel`` is read); returns the progress line that says so."""
        ...

    def use_threads(self, cap: int, sweeps: int) -> int:
        """Use at most ``cap`` CPU threads of this host from the next run on, ``sweeps`` sweeps
        sharing it; returns how many its runs will use in all (0: its runs execute elsewhere)."""
        ...

    def run(self, ctx: SweepContext, specs: Sequence[RunSpec], store: ResultStore) -> Iterator[Finished]:
        """Execute ``specs``, each claimed in ``store``; yield each as it finishes, whatever the
        order. Never raises for a run; a write the results folder refuses raises ``StorageError``."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """On this machine's one device: in this process, one run after another in the order given
    (the default on the CPU), or ``runs_per_device`` at a time in worker processes."""

    name = "local"
    host_cores = "shared"

    def __init__(self, runs_per_device: int | None = None) -> None:
        self.asked = runs_per_device  # None: chosen from the model's size and the free memory
        self.runs = 1
        self.threads: int | None = None  # per run, once ``use_threads`` set it (None: torch's own)
        self.sweeps = 1  # sweeps sharing this host's cores, as ``use_threads`` was told
        self._own_threads = torch.get_num_threads()  # what a run here takes alone (OMP_NUM_THREADS)
        self._workers: WorkerProcesses | None = None

    @property
    def parallel(self) -> bool:
        return self.runs > 1

    def start(self, device: str | None, precision: str) -> Placement:
        picked = pick_device(device)
        enable_tf32(picked)
        return Placement(picked, resolve_precision(precision, picked), describe_environment(picked))

    def share_devices(self, ctx: SweepContext) -> str:
        self.runs = runs_per_device(self.asked, ctx, free_memory(ctx.device))
        return describe_sharing(self.runs, str(ctx.device))

    def use_threads(self, cap: int, sweeps: int) -> int:
        self.sweeps = sweeps
        if self.runs > 1:  # split between the worker processes
            self.threads = max(1, min(available_cpus(), cap) // self.runs)
            return self.threads * self.runs
        self.threads = min(self._own_threads, cap)
        return self.threads

    def run(self, ctx: SweepContext, specs: Sequence[RunSpec], store: ResultStore) -> Iterator[Finished]:
        if self.runs > 1:
            if self._workers is None or self._workers.ctx is not ctx:
                self.close()
                self._workers = WorkerProcesses(ctx, self.runs)
            yield from self._workers.run(specs, store, self.threads, self.sweeps)
            return
        here = self._here(ctx)
        for spec in specs:
            staged = store.staging(spec.run_id)
            resume, state = store.state_paths(spec.run_id, spec.resume, spec.keep_state)
            try:
                record = execute_run(here, spec, staged, resume=resume, state_dir=state)
            except BaseException:  # interrupted (Ctrl-C): leave no half-saved adapter or state behind
                shutil.rmtree(staged, ignore_errors=True)
                if state is not None:
                    shutil.rmtree(state, ignore_errors=True)
                raise
            yield spec, record, staged

    def _here(self, ctx: SweepContext) -> SweepContext:
        """The context runs in this process see, with the threads this sweep's share gives them."""
        if self.threads is None:
            return ctx
        torch.set_num_threads(self.threads)
        shared = {"sweeps_on_host": self.sweeps} if self.sweeps > 1 else {}
        environment = {**ctx.environment, "torch_threads": self.threads, **shared}
        return dataclasses.replace(ctx, environment=environment)

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
            self._workers = None


def get_executor(
    name: str = "local", ray_address: str | None = None, runs_per_device: int | None = None
) -> Executor:
    """The executor called ``name``; raises a one-line error for an unknown name or a missing extra."""
    refuse_inside_worker()
    if name == "local":
        if ray_address:
            raise PeftbenchError("--ray-address is only used with --executor ray")
        return LocalExecutor(runs_per_device)
    if name == "ray":
        try:
            import ray  # noqa: F401  (checked here so the error names the extra to install)
        except ImportError:
            raise PeftbenchError(RAY_MISSING) from None
        from peftbench.runs.ray_executor import RayExecutor

        return RayExecutor(address=ray_address, runs_per_device=runs_per_device)
    raise UnknownNameError(f"unknown executor '{name}'; known executors: {', '.join(EXECUTORS)}")
