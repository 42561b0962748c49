"""Executors: who runs a batch of independent runs, one after another here or spread over a cluster.

The sweep keeps every decision (validation of the input, tuning selection, resume, writing
records); an executor only decides where the runs of a batch execute and yields each run's record
as it finishes. ``local`` runs them in this process, in order, as peftbench always has; ``ray``
(an optional extra, imported only when asked for) makes each run a Ray task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from peftbench.environment import describe_environment, pick_device
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.plugins import RegisteredMethod
from peftbench.precision import enable_tf32, resolve_precision
from peftbench.records import RunRecord
from peftbench.runner import SweepContext, execute_run

EXECUTORS = ("local", "ray")
RAY_MISSING = "Ray is not installed: pip install 'peftbench[ray]'"


@dataclass(frozen=True)
class RunSpec:
    """One run the sweep has decided on: everything ``execute_run`` needs besides the context."""

    entry: RegisteredMethod
    hp: dict[str, Any]
    seed: int
    run_id: str
    stage: str = "final"
    tuning: dict[str, Any] | None = None
    label: str = ""  # what progress lines call it, e.g. "lora seed 1"


@dataclass(frozen=True)
class Placement:
    """Where runs will execute, resolved before the run ids are (the precision is part of them)."""

    device: torch.device
    precision: str  # resolved: "fp32" or "bf16"
    environment: dict[str, Any] = field(default_factory=dict)
    description: str | None = None  # a progress line saying where runs go; None for local


class Executor(Protocol):
    name: str
    #: True when the runs of a batch execute at the same time: the sweep then batches every
    #: method's tuning candidates together, then every final run, instead of one method at a time.
    parallel: bool

    def start(self, device: str | None, precision: str) -> Placement: ...

    def run(self, ctx: SweepContext, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunRecord]]:
        """Execute ``specs``; yield each with its record as it finishes, whatever the order."""
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

    def run(self, ctx: SweepContext, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, RunRecord]]:
        for spec in specs:
            record = execute_run(ctx, spec.entry, spec.hp, spec.seed, spec.run_id, spec.stage, spec.tuning)
            yield spec, record

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
        from peftbench.ray_executor import RayExecutor

        return RayExecutor(address=ray_address)
    raise UnknownNameError(f"unknown executor '{name}'; known executors: {', '.join(EXECUTORS)}")
