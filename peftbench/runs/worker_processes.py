"""Several runs at once on this machine's device: worker processes, each fed one run at a time.

What the local executor uses for ``--runs-per-device N`` with N > 1. Each worker is a fresh
(spawned) Python process: it receives the sweep context once, when it starts, takes its share of
the CPU's threads, then executes the runs it is handed one after another, saving each adapter
straight into the results store's staging folder (the same disk). Records come back to the
sweep's process, which settles them exactly as it does for one run at a time.

Why not ``concurrent.futures.ProcessPoolExecutor``: a worker that dies (killed, out of memory)
breaks that pool and fails every pending run with it, and nothing says which run it held. Here
each worker has its own pipe and tells which phase its run is in, so a death costs exactly the run
it held — a ``failed`` record naming the phase — and a fresh worker takes the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import shutil
import signal
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import torch

from peftbench.environment import describe_environment
from peftbench.errors import PeftbenchError, StorageError
from peftbench.precision import enable_tf32
from peftbench.records import RunRecord
from peftbench.runs.context import SweepContext
from peftbench.runs.runner import execute_run
from peftbench.runs.sharing import threads_per_run
from peftbench.runs.spec import RunSpec, lost_record
from peftbench.runs.store import ResultStore
from peftbench.runs.workers import first_line, worker_context

SPAWN = multiprocessing.get_context("spawn")  # fork would copy a CUDA context and locked threads
WORKER_NAME = "peftbench-run"
GUARD = (
    "a script that calls peftbench.run with several runs per device must call it under "
    '`if __name__ == "__main__":` (each worker process imports the script)'
)
WHERE = "in a worker process"  # how a lost run's phase is placed
STOP_TIMEOUT_S = 10  # how long a worker may take to exit when asked, before it is killed

Finished = tuple[RunSpec, RunRecord, Path | None]


@dataclass
class _Worker:
    process: Any  # a spawned multiprocessing Process
    conn: Connection
    job: tuple[RunSpec, Path, Path | None] | None = None  # the run it holds, its staging folders
    phase: str | None = None  # the phase that run last said it entered


class WorkerProcesses:
    """At most ``runs`` worker processes executing the runs of one sweep at the same time."""

    def __init__(self, ctx: SweepContext, runs: int) -> None:
        self.ctx, self.runs = ctx, runs
        self._idle: list[_Worker] = []

    def run(
        self, specs: Sequence[RunSpec], store: ResultStore, threads: int | None = None, sweeps: int = 1
    ) -> Iterator[Finished]:
        """Execute ``specs``, ``runs`` at a time, each with ``threads`` threads (default: this
        machine's share of one run; ``sweeps`` sweeps share the machine); yield each as it finishes.
        Never raises for a run; a run whose adapter the results folder refuses raises ``StorageError``."""
        waiting, busy = deque(specs), []
        share = (threads or threads_per_run(self.runs), sweeps)
        try:
            while waiting or busy:
                while waiting and len(busy) < self.runs:
                    spec = waiting.popleft()
                    refused = self._hand(spec, store, busy, share)
                    if refused is not None:
                        yield refused
                if not busy:  # every run left was refused before reaching a worker
                    continue
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                    finished = self._hear(worker)
                    if finished is not None:
                        busy.remove(worker)
                        yield finished
        finally:  # interrupted (Ctrl-C): stop the runs under way and leave no staging folder behind
            for worker in busy:
                _stop(worker)
                for folder in worker.job[1:]:
                    if folder is not None:
                        shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Ask the idle workers to exit (the busy ones were stopped when their batch ended)."""
        for worker in self._idle:
            with contextlib.suppress(OSError):  # it died while idle: stopping it is all there is to do
                worker.conn.send(None)
        for worker in self._idle:
            _stop(worker, STOP_TIMEOUT_S)
        self._idle = []

    def _hand(
        self, spec: RunSpec, store: ResultStore, busy: list[_Worker], share: tuple[int, int]
    ) -> Finished | None:
        """Give ``spec`` to an idle worker (or a new one); the run's record if it cannot be sent."""
        staged = store.staging(spec.run_id)
        resume, state = store.state_paths(spec.run_id, spec.resume, spec.keep_state)
        try:
            job = ForkingPickler.dumps((spec, staged, resume, state, *share))
        except Exception as error:  # the run cannot be pickled (a plugin's method holds a lambda, ...)
            message = f"{type(error).__name__}: {first_line(error)}"
            return spec, lost_record(self.ctx, spec, message, f"setup {WHERE}"), None
        while True:
            fresh = not self._idle
            worker = self._start() if fresh else self._idle.pop()
            try:
                worker.conn.send_bytes(job)
            except OSError:  # the idle worker died between runs: a fresh one takes the run
                _stop(worker)
                if not fresh:
                    continue
                message = "the worker process did not start"
                return spec, lost_record(self.ctx, spec, message, f"setup {WHERE}"), None
            worker.job, worker.phase = (spec, staged, state), None
            busy.append(worker)
            return None

    def _hear(self, worker: _Worker) -> Finished | None:
        """Read what ``worker`` said: its run's result once it finished or died, else ``None``."""
        spec, staged, _ = worker.job
        try:
            while worker.conn.poll():
                kind, value = worker.conn.recv()
                if kind == "phase":
                    worker.phase = value
                    continue
                worker.job = None
                self._idle.append(worker)
                if kind == "done":
                    return spec, value, staged
                if kind == "refused":  # the results folder refused the adapter: the sweep stops
                    shutil.rmtree(staged, ignore_errors=True)
                    raise StorageError(value)
                return spec, lost_record(self.ctx, spec, value, f"setup {WHERE}"), staged
        except (EOFError, OSError):  # its end of the pipe closed: the process is dying
            worker.process.join(STOP_TIMEOUT_S)
        if worker.process.is_alive():
            return None
        _stop(worker)
        death = _death(worker.process.exitcode)
        if worker.phase is None:
            message = f"WorkerDied: the worker process exited before the run began ({death}); {GUARD}"
        else:
            message = f"WorkerDied: the worker process died mid-run ({death})"
        return spec, lost_record(self.ctx, spec, message, f"{worker.phase or 'setup'} {WHERE}"), staged

    def _start(self) -> _Worker:
        here, there = SPAWN.Pipe()
        threads = threads_per_run(self.runs)
        process = SPAWN.Process(
            target=serve, args=(there, self.ctx, self.runs, threads), name=WORKER_NAME, daemon=True
        )
        process.start()
        there.close()
        return _Worker(process, here)


def serve(conn: Connection, ctx: SweepContext, runs: int, threads: int) -> None:
    """A worker process: execute each run received, send its phases and its record, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's: it stops its workers
    torch.set_num_threads(threads)
    enable_tf32(ctx.device)
    environment = {**describe_environment(ctx.device), "runs_per_device": runs}
    here = worker_context(ctx, ctx.device, environment)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the sweep's process is gone
            return
        except Exception as error:  # the run cannot be unpickled here (its method's module, ...)
            conn.send(("error", f"{type(error).__name__}: {first_line(error)}"))
            continue
        if job is None:
            return
        spec, staged, resume, state, threads, sweeps = job
        torch.set_num_threads(threads)
        shared = {"sweeps_on_host": sweeps} if sweeps > 1 else {}
        environment = {**here.environment, "torch_threads": threads, **shared}
        run = dataclasses.replace(here, environment=environment)
        try:
            record = execute_run(
                run, spec, staged, lambda phase: conn.send(("phase", phase)), resume=resume, state_dir=state
            )
        except StorageError as error:
            conn.send(("refused", str(error)))
            continue
        conn.send(("done", record))


def refuse_inside_worker() -> None:
    """A sweep starting inside a worker process means the worker is importing a script that calls
    ``peftbench.run`` without the ``__main__`` guard: stop it rather than run the sweep twice."""
    if multiprocessing.current_process().name == WORKER_NAME:
        raise PeftbenchError(f"peftbench.run was called again while a worker process started: {GUARD}")


def _stop(worker: _Worker, timeout: float = 0) -> None:
    worker.process.join(timeout)
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join()
    worker.conn.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"
