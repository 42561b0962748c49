"""What every run executed outside the sweep's own process needs, in a Ray task or a local
worker process: its view of the sweep context, and the adapter files it sends back."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from peftbench.records import RunRecord
from peftbench.runs.context import SweepContext


@dataclasses.dataclass
class WorkerResult:
    """What a remote run sends back: the record, and the saved adapter as {relative path: bytes}."""

    record: RunRecord
    adapter_files: dict[str, bytes] | None  # None: the run saved no adapter folder
    state_files: dict[str, bytes] | None = None  # its training state, where it saved one


def worker_context(ctx: SweepContext, device: torch.device, environment: dict[str, Any]) -> SweepContext:
    """The sweep's context as a worker sees it: its own device and environment (described where
    the run executes, with the threads it was given), and no progress bars."""
    return dataclasses.replace(ctx, device=device, environment=environment, progress=False)


def read_files(folder: Path) -> dict[str, bytes] | None:
    """An adapter folder as bytes, to travel to another machine (``None``: there is none)."""
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}


def unpack_files(files: dict[str, bytes] | None, folder: Path) -> None:
    """Recreate the adapter folder a worker sent (``None``: it saved none) as ``folder``."""
    if files is None:
        return
    folder.mkdir(parents=True)
    for relative, blob in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]
