"""``peftbench run | methods | leaderboard | docs``: the command line, a thin layer over the API.

A ``PeftbenchError`` (anything the user can fix) is printed as one line and exits 2; a sweep in
which some runs failed exits 1 after writing every record it could.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from peftbench.errors import PeftbenchError

EXIT_SOME_RUNS_FAILED = 1
EXIT_USAGE = 2
DEFAULT_METHODS = "lora"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peftbench", description="Benchmark parameter-efficient fine-tuning methods."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("methods", help="list the registered methods")

    run = commands.add_parser("run", help="fine-tune with each method and seed, write records")
    run.add_argument(
        "--model", default="gpt2", help="Hub id, local folder or alias (minilm, tiny-gpt2, gpt2-random)"
    )
    run.add_argument("--dataset", default="rotten_tomatoes", help="Hub id, mirror name, folder or file")
    run.add_argument("--dataset-config", default=None, help="dataset configuration, e.g. sst2 for glue")
    run.add_argument(
        "--methods", default=DEFAULT_METHODS, help="comma-separated method names (default: lora)"
    )
    run.add_argument("--seeds", default="0", help="comma-separated integer seeds (default: 0)")
    run.add_argument("--num-seeds", type=int, default=None, help="use seeds 0..N-1 instead of --seeds")
    run.add_argument("--tune", action="store_true",
                     help="pick hyper-parameters on validation, then test every seed")  # fmt: skip
    run.add_argument("--epochs", type=float, default=1.0)
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--max-length", type=int, default=128, help="tokens per example after truncation")
    run.add_argument("--max-steps", type=int, default=None, help="cap on optimiser steps (smoke runs)")
    run.add_argument("--hp", action="append", default=[], metavar="METHOD.KEY=VALUE",
                     help="hyper-parameter override, repeatable, e.g. --hp lora.r=16")  # fmt: skip
    run.add_argument("--text-column", default=None)
    run.add_argument("--label-column", default=None)
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if present)")
    run.add_argument("--precision", default="auto", help="auto (bf16 where the hardware has it), bf16, fp32")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (GPUs, long runs)")
    run.add_argument("--out", default="runs", help="results folder (records/ and adapters/)")
    run.add_argument("--force", action="store_true", help="rerun runs that already have a complete record")
    run.add_argument("--no-references", action="store_true", help="skip the baseline and majority rows")
    run.add_argument("--trust-remote-code", action="store_true", help="allow model code from the Hub")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--executor", default="local",
                     help="local (this process, default) or ray (a Ray task per run)")  # fmt: skip
    run.add_argument("--ray-address", default=None,
                     help="Ray cluster to join (default: $RAY_ADDRESS, else start one)")  # fmt: skip

    board = commands.add_parser("leaderboard", help="print the leaderboard of a results folder")
    board.add_argument("out", nargs="?", default="runs")
    board.add_argument("--format", choices=["markdown", "csv"], default="markdown")

    docs = commands.add_parser("docs", help="generate the site's leaderboard and method pages from records")
    docs.add_argument("--records", default="leaderboard/records", help="run records, in any sub-folder")
    docs.add_argument("--site", default="docs", help="the mkdocs docs folder to write into")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        commands = {"methods": _methods, "run": _run, "leaderboard": _leaderboard, "docs": _docs}
        return commands[args.command](args)
    except PeftbenchError as error:
        print(f"peftbench: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("peftbench: interrupted; finished runs keep their records", file=sys.stderr)
        return 130


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """peftbench's own warnings (a skipped plugin or record) are one line for people."""
    from peftbench.costs import CostWarning
    from peftbench.plugins import PluginWarning
    from peftbench.records import RecordWarning
    from peftbench.token_cache import CacheWarning

    if issubclass(category, (PluginWarning, RecordWarning, CacheWarning, CostWarning)):
        print(f"peftbench: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def _methods(args: argparse.Namespace) -> int:
    from peftbench.plugins import collect_methods

    for entry in collect_methods().entries():
        method = entry.method
        role = (
            ""
            if method.role == "method"
            else f" [{method.role}{', always run' if method.always_run else ''}]"
        )
        default = " (default)" if method.name in DEFAULT_METHODS.split(",") else ""
        print(f"{method.name}{default}{role}  ({entry.source})")
        print(f"    {method.description}")
        if method.trains or method.defaults:
            print(f"    defaults: {_format_defaults(method.hyperparameters())}")
        if method.tuning_grid():
            print(f"    --tune tries: {_format_defaults(method.tuning_grid())}")
    return 0


def _format_defaults(values: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in values.items())


def _run(args: argparse.Namespace) -> int:
    from peftbench.api import run

    board = run(
        model=args.model,
        dataset=args.dataset,
        methods=args.methods,
        out=args.out,
        seeds=_parse_seeds(args.seeds) if args.num_seeds is None else _count_seeds(args.num_seeds),
        tune=args.tune,
        epochs=args.epochs,
        hp=args.hp,
        dataset_config=args.dataset_config,
        text_column=args.text_column,
        label_column=args.label_column,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_steps=args.max_steps,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        force=args.force,
        references=not args.no_references,
        trust_remote_code=args.trust_remote_code,
        progress=not args.quiet,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    print(board.to_markdown())
    failed = board.incomplete_runs()
    if failed:
        names = ", ".join(sorted({f"{r.method} ({r.status})" for r in failed}))
        print(
            f"peftbench: {len(failed)} run(s) of this sweep did not complete: {names}; see the records' "
            "error field",
            file=sys.stderr,
        )
        return EXIT_SOME_RUNS_FAILED
    return 0


def _parse_seeds(text: str) -> list[int]:
    seeds = []
    for part in text.split(","):
        try:
            seeds.append(int(part.strip()))
        except ValueError:
            raise PeftbenchError(f"seed '{part.strip()}' is not an integer: write --seeds 0,1,2") from None
    return seeds


def _count_seeds(count: int) -> list[int]:
    if count < 1:
        raise PeftbenchError(f"--num-seeds {count}: give at least 1")
    return list(range(count))


def _leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from peftbench.leaderboard import Leaderboard

    if not Path(args.out).is_dir():
        raise PeftbenchError(f"results folder '{args.out}' does not exist: pass the --out of a run")
    board = Leaderboard.from_dir(args.out)
    print(board.to_markdown() if args.format == "markdown" else board.to_csv(), end="")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from peftbench.site import build_site

    built = build_site(args.records, args.site)
    print(
        f"peftbench: wrote {len(built.pages)} pages and {len(built.plots)} plots under {args.site}/ "
        f"from {built.records} records" + (f"; removed {len(built.removed)} stale" if built.removed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
