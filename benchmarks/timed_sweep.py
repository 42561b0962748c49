"""A timed sweep: its wall time and where it went (loading, tokenising, training, evaluation, ...).

Runs ``peftbench run`` in this process into a fresh folder (so nothing is skipped as already
done) and writes one Markdown section: the wall time, then the sweep's own account of its setup
and the sum of each run phase over its runs. With several runs sharing a device the run phases
overlap, so their sum can exceed the wall time; the table says so.

    .venv/bin/python benchmarks/timed_sweep.py --methods lora,ia3,prefix_tuning --num-seeds 3 --tune \\
        --append benchmarks/results/nvidia-h100.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

started = time.perf_counter()
sys.path.insert(0, str(Path(__file__).parent))
from offline import use_local_mirror  # noqa: E402

use_local_mirror()

from peftbench.records import read_records  # noqa: E402
from peftbench.runs.sweep import run_sweep  # noqa: E402
from peftbench.settings import sweep_config  # noqa: E402

#: Run phases as the records name their seconds, in the order a run goes through them.
RUN_PHASES = {
    "prepare": "prepare_seconds",
    "training": "train_seconds",
    "learning-curve evaluations": "curve_eval_seconds",
    "evaluation": "evaluate_seconds",
    "save": "save_seconds",
    "reload and check": "reload_seconds",
    "inference timing": "inference_seconds",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-random")
    parser.add_argument("--dataset", default="rotten_tomatoes")
    parser.add_argument("--methods", default="lora,ia3,prefix_tuning")
    parser.add_argument("--num-seeds", type=int, default=3)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--device", default=None)
    parser.add_argument("--runs-per-device", type=int, default=None, help="default: peftbench's choice")
    parser.add_argument("--max-steps", type=int, default=None, help="cap each run (dry runs)")
    parser.add_argument("--no-references", action="store_true", help="skip the reference rows")
    parser.add_argument("--no-inference-timing", action="store_true", help="skip timing final runs")
    parser.add_argument("--append", type=Path, default=None, help="a Markdown file to add the section to")
    args = parser.parse_args(argv)
    imported = time.perf_counter() - started
    settings = {
        "model": args.model, "dataset": args.dataset, "methods": args.methods, "num_seeds": args.num_seeds,
        "tune": args.tune, "device": args.device, "runs_per_device": args.runs_per_device,
        "max_steps": args.max_steps, "references": not args.no_references,
        "measure_inference": not args.no_inference_timing,
    }  # fmt: skip
    config = sweep_config(**{k: v for k, v in settings.items() if v is not None}, out=tempfile.mkdtemp())
    begin = time.perf_counter()
    busy = GpuBusy(config.device)
    try:
        outcome = run_sweep(config)
    except KeyboardInterrupt:  # the check's time limit: say what was done by then
        outcome = None
    wall = time.perf_counter() - begin
    busy.stop()
    records = read_records(config.out)
    shutil.rmtree(config.out, ignore_errors=True)
    section = report(args, outcome, records, wall, imported) + busy.line()
    print(section, flush=True)
    if args.append:
        with args.append.open("a") as file:
            file.write(section + "\n")
    return 0 if outcome is not None and not outcome.incomplete else 1


class GpuBusy:
    """How busy the GPU was while the sweep ran, sampled every 0.2 s from the driver (NVML): the mean
    utilisation and the share of samples with no kernel running. Nothing on the CPU or without NVML."""

    def __init__(self, device: str | None) -> None:
        self.samples: list[int] = []
        self._done = threading.Event()
        self._thread = None
        try:
            import torch

            if (device or "cuda").startswith("cuda") and torch.cuda.is_available():
                torch.cuda.utilization()  # raises without NVML (nvidia-ml-py)
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        except Exception:  # no GPU, or no NVML: the section says nothing about it
            self._thread = None

    def _sample(self) -> None:
        import torch

        while not self._done.wait(0.2):
            self.samples.append(int(torch.cuda.utilization()))

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def line(self) -> str:
        if not self.samples:
            return ""
        mean = sum(self.samples) / len(self.samples)
        idle = sum(value == 0 for value in self.samples) / len(self.samples)
        return (
            f"\nGPU busy (NVML, {len(self.samples)} samples at 0.2 s): mean utilisation {mean:.0f}%, "
            f"no kernel running in {100 * idle:.0f}% of the samples.\n"
        )


def report(args, outcome, records, wall: float, imported: float) -> str:
    if outcome is None:
        finals = sum(r.stage == "final" for r in records)
        return (
            f"## Timed sweep cut short: {args.model} x {args.dataset}, {args.methods}\n\n"
            f"Stopped by its time limit after {wall:.1f} s with {len(records)} runs done ({finals} final).\n"
        )
    shared = outcome.runs_per_device
    title = (
        f"## Timed sweep: {args.model} x {args.dataset}, {args.methods}, --num-seeds {args.num_seeds}"
        f"{' --tune' if args.tune else ''}, {shared} run(s) at a time per device"
    )
    rows = [("import peftbench", imported)]
    rows += [(f"setup: {name}", seconds) for name, seconds in outcome.seconds.items()]
    run_rows = [
        (f"runs: {name}", sum(r.costs.get(key) or 0.0 for r in records)) for name, key in RUN_PHASES.items()
    ]
    accounted = sum(seconds for _, seconds in rows[1:]) + sum(seconds for _, seconds in run_rows)
    where = records[0].environment.get("device_name", "?") if records else "?"
    tuning = sum(r.stage == "tune" for r in records)
    lines = [
        title,
        "",
        f"Wall time {wall:.1f} s for {len(records)} runs ({tuning} tuning) on {where}; "
        f"{len(outcome.incomplete)} final run(s) incomplete.",
        "",
        "| where | seconds | share of the sweep's wall time |",
        "|---|---:|---:|",
    ]
    for name, seconds in [*rows, *run_rows]:
        lines.append(f"| {name} | {seconds:.1f} | {100 * seconds / wall:.0f}% |")
    if shared == 1:
        rest = wall - accounted
        lines.append(f"| other (scheduling, records, progress) | {rest:.1f} | {100 * rest / wall:.0f}% |")
    else:
        lines += [
            "",
            f"Runs overlap ({shared} at a time): run phases summed over runs exceed the wall time.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
