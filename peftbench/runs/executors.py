"""Executors: who runs a batch of independent runs, one after another here or spread over a cluster.

An executor only decides where the runs of a batch execute and hands back, as each finishes, its
record and the folder its adapter was staged in; the sweep decides everything else and the
results store keeps the results. ``local`` runs them in this process, in order; ``ray`` (an
optional extra, imported only when asked for) makes each run a Ray task.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

from peftbench.environment import describe_environment, pick_device
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.precision import enable_tf32, resolve_precision
from peftbench.records import RunRecord
from peftbench.runs.context import Placement, SweepContext
from peftbench.runs.runner import execute_run
from peftbench.runs.spec import RunSpec
from peftbench.runs.store import ResultStore

EXECUTORS = ("local", "ray")
RAY_MISSING = "Ray is not installed: pip install 'peftbench[ray]'"

#: What an executor yields per run: the spec, its record, and where its adapter was staged.
Finished = tuple[RunSpec, RunRecord, Path | None]


class Executor(Protocol):
    name: str
    #: True when the runs of a batch execute at the same time: the sweep then batches every
    #: method's tuning candidates together, then every final run, instead of one method at a time.
    parallel: bool

    def start(self, device: str | None, precision: str) -> Placement: ...

    def run(self, ctx: SweepContext, specs: Sequence[RunSpec], store: ResultStore) -> Iterator[Finished]:
        """Execute ``specs``; yield each as it finishes, whatever the order. Never raises for a run."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """In this process, one run after another, in the order given (the default)."""

    name = "local"
    parallel = False

    def start(self, device: str | None, precision: str) -> Placement:
        picked = pick_device(device)
        enable_tf32(picked)
        return Placement(picked, resolve_precision(precision, picked), describe_environment(picked))

    def run(self, ctx: SweepContext, specs: Sequence[RunSpec], store: ResultStore) -> Iterator[Finished]:
        for spec in specs:
            staged = store.staging(spec.run_id)
            try:
                record = execute_run(ctx, spec, staged)
            except BaseException:  # interrupted (Ctrl-C): leave no half-saved adapter behind
                shutil.rmtree(staged, ignore_errors=True)
                raise
            yield spec, record, staged

    def close(self) -> None:
        pass


def get_executor(name: str = "local", ray_address: str | None = None) -> Executor:
    """The executor called ``name``; raises a one-line error for an unknown name or a missing extra."""
    if name == "local":
        if ray_address:
            raise PeftbenchError("--ray-address is only used with --executor ray")
        return LocalExecutor()
    if name == "ray":
        try:
            import ray  # noqa: F401  (checked here so the error names the extra to install)
        except ImportError:
            raise PeftbenchError(RAY_MISSING) from None
        from peftbench.runs.ray_executor import RayExecutor

        return RayExecutor(address=ray_address)
    raise UnknownNameError(f"unknown executor '{name}'; known executors: {', '.join(EXECUTORS)}")
