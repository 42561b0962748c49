"""GPU benchmark: full-size GPT-2 (random weights, real tokenizer) on rotten_tomatoes.

For lora, ia3 and prefix_tuning, peftbench's engine against HF Trainer as a notebook uses it and
at its best; prints tokens/s, MFU estimate, peak memory and speed-up ratios, and writes them to
``--out`` as Markdown named after the card. Needs no network (PEFTBENCH_MIRROR for the data and
tokenizer; ../shared beside the checkout is used when it is there). About two to four minutes
on one H100.

    .venv/bin/python benchmarks/gpu_benchmark.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from offline import use_local_mirror  # noqa: E402

use_local_mirror()

from engines import ENGINES, BenchData, BenchSetup, comparison_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-random")
    parser.add_argument("--dataset", default="rotten_tomatoes")
    parser.add_argument("--methods", default="lora,ia3,prefix_tuning")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--device", default=None, help="default: cuda (refuses to run without one)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the Markdown results")
    parser.add_argument(
        "--append", type=Path, default=None, help="a Markdown file to add each table to as it is measured"
    )
    args = parser.parse_args(argv)
    if args.device is None and not torch.cuda.is_available():
        print("no CUDA GPU found; pass --device cpu for a (slow) dry run", file=sys.stderr)
        return 2
    device = args.device or "cuda"
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    header = (
        f"# peftbench vs HF Trainer on {card}\n\n"
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"model {args.model}, dataset {args.dataset}, 1 epoch, batch {args.batch_size}\n"
    )
    print(header, flush=True)
    sections = [header]
    path = None
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"{re.sub(r'[^A-Za-z0-9]+', '-', card).strip('-').lower()}.md"
    started = time.perf_counter()
    for method in args.methods.split(","):
        setup = BenchSetup(
            model=args.model, dataset=args.dataset, method=method, batch_size=args.batch_size,
            train_samples=args.train_samples, device=device,
        )  # fmt: skip
        data = BenchData(setup)
        results = {name: ENGINES[name](data) for name in args.engines.split(",")}
        table = comparison_table(setup, results, card)
        print(table + "\n", flush=True)
        sections.append(table + "\n")
        _save(sections, path, args.append)  # after each method: a run cut short keeps what it measured
    sections.append(f"Total wall time: {time.perf_counter() - started:.0f} s\n")
    print(sections[-1])
    _save(sections, path, args.append)
    if path:
        print(f"written to {path}")
    return 0


def _save(sections: list[str], path: Path | None, append: Path | None) -> None:
    """Rewrite ``path`` whole with every section so far; add the newest section to ``append``."""
    if path:
        path.write_text("\n".join(sections))
    if append:
        with append.open("a") as file:
            file.write(sections[-1] + "\n")


if __name__ == "__main__":
    sys.exit(main())
