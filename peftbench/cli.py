"""``peftbench run | methods | tasks | leaderboard | docs``: the command line, a thin layer over the API.

``run``'s options are derived from the settings (``peftbench.settings``): each is
``--its-name`` with the setting's help and default, so a new setting needs no change here.
A ``PeftbenchError`` (anything the user can fix) is printed as one line and exits 2; a sweep in
which some runs failed exits 1 after writing every record it could.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from collections.abc import Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from peftbench.errors import PeftbenchError
from peftbench.formatting import hp_text, value
from peftbench.settings import SweepConfig, setting_fields
from peftbench.validation import range_text, type_name

EXIT_SOME_RUNS_FAILED = 1
EXIT_USAGE = 2
PARSE_TYPES = {"int": int, "float": float}  # the rest reaches the settings as text, which they parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peftbench", description="Benchmark parameter-efficient fine-tuning methods."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("methods", help="list the registered methods and their hyper-parameters")
    commands.add_parser("tasks", help="list the registered kinds of task and their metrics")

    run = commands.add_parser("run", help="fine-tune with each method and seed, write records")
    for name, field in setting_fields().items():
        _add_setting(run, name, field)
    _add_columns(run)

    board = commands.add_parser("leaderboard", help="print the leaderboard of a results folder")
    board.add_argument("out", nargs="?", default="runs")
    board.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    _add_columns(board)
    board.add_argument(
        "--aggregate",
        action="store_true",
        help="per model with 2+ datasets, one row per method over them: mean rank, wins/ties/losses "
        "and the share of full fine-tuning's gain",
    )

    docs = commands.add_parser("docs", help="generate the site's leaderboard and method pages from records")
    docs.add_argument("--records", default="leaderboard/records", help="run records, in any sub-folder")
    docs.add_argument("--site", default="docs", help="the mkdocs docs folder to write into")
    docs.add_argument(
        "--benchmarks",
        help="engine benchmark results (*.md) to publish under benchmarks/ "
        "(default: benchmarks/results where it exists; else those pages are left as they are)",
    )
    docs.add_argument(
        "--previous",
        help="records of the previous protocol (an earlier version's results folder): each table page "
        "gains a 'What changed' section against its same table there (default: leaderboard/previous "
        "where it exists)",
    )
    return parser


def _add_columns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--columns",
        default="default",
        metavar="COLUMNS",
        help="the leaderboard's columns: default (the deciding ones: method, seeds, the primary metric "
        "with its interval, Δ and p, trainable parameters, train s, latency; fitted to the terminal's "
        "width), all, or comma-separated column names (e.g. score,macro_f1,peak_memory_mb)",
    )


def _table(board, columns: str) -> str:
    """The board's Markdown, the default columns fitted to the terminal (when printing to one)."""
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    return board.to_markdown(columns, width)


def _add_setting(parser: argparse.ArgumentParser, name: str, field: FieldInfo) -> None:
    """``--name VALUE`` (or the flag the setting names) with the setting's help and default."""
    cli = (field.json_schema_extra or {}).get("cli", {})
    flag = cli.get("flag") or "--" + name.replace("_", "-")
    default = field.get_default(call_default_factory=True)
    options: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
    if type_name(field) == "bool":  # a flag; one that turns a setting off says so in its own words
        options["action"] = "store_false" if default else "store_true"
        help_text = cli.get("help") or field.description
    else:
        options["type"] = PARSE_TYPES.get(type_name(field), str)
        options["metavar"] = cli.get("metavar") or name.upper()
        if cli.get("repeat"):
            options["action"] = "append"
        choices = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
        limits = range_text(field) or (f"one of {', '.join(choices)}" if choices else "")
        shown = ",".join(map(value, default)) if isinstance(default, tuple) else value(default)
        shown = "" if default in ({}, None) else shown
        extras = ", ".join(part for part in (f"default: {shown}" if shown else "", limits) if part)
        help_text = f"{field.description} ({extras})" if extras else field.description
    parser.add_argument(flag, help=help_text.replace("%", "%%"), **options)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        commands = {
            "methods": _methods,
            "tasks": _tasks,
            "run": _run,
            "leaderboard": _leaderboard,
            "docs": _docs,
        }
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
    if issubclass(category, _own_warnings()):
        print(f"peftbench: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


#: peftbench's warnings for people, by the module that declares each.
_WARNINGS = {
    "peftbench.costs": "CostWarning",
    "peftbench.plugins": "PluginWarning",
    "peftbench.records": "RecordWarning",
    "peftbench.token_cache": "CacheWarning",
}


def _own_warnings() -> tuple[type, ...]:
    """Those of the warnings whose module is loaded (no other can have been raised): a command that
    never loads torch does not load it to print a warning."""
    return tuple(
        getattr(sys.modules[module], name) for module, name in _WARNINGS.items() if module in sys.modules
    )


def _methods(args: argparse.Namespace) -> int:
    from peftbench.methods.base import FEATURES_FACT
    from peftbench.methods.hyperparameters import declared
    from peftbench.methods.support import FAMILIES
    from peftbench.plugins import collect_methods

    default_methods = SweepConfig.model_fields["methods"].default
    for entry in collect_methods().entries():
        method = entry.method
        always = ", always run" if method.always_run else ""
        role = "" if method.role == "method" else f" [{method.role}{always}]"
        default = " (default)" if method.name in default_methods else ""
        print(f"{method.name}{default}{role}  ({entry.source})")
        print(f"    {method.description}")
        if method.trains_on_features:
            print(f"    {FEATURES_FACT}")
        for family, reason in method.unsupported.items():
            print(f"    cannot train {FAMILIES[family]} models: {reason}")
        rows = declared(method.hyperparameter_model())
        if rows:
            print(f"    defaults: {hp_text({row.name: row.default for row in rows})}")
            width = max(len(row.name) for row in rows)
            for row in rows:
                detail = ", ".join(part for part in (row.type, row.range) if part)
                print(f"      {row.name:<{width}}  {row.help or '(no help given)'} ({detail})")
        if method.tuning_grid():
            print(f"    --tune tries: {hp_text(method.tuning_grid())} (and beyond an end that scores best)")
            if method.search_space_source:
                print(f"      from: {method.search_space_source}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from peftbench.tasks.registry import collect_tasks

    for entry in collect_tasks().entries():
        task = entry.task
        print(f"{task.name}  ({entry.source})")
        print(f"    {task.description}")
        print(f"    {task.explain()}")
        for metric in task.metrics:
            direction = "higher is better" if metric.higher_is_better else "lower is better"
            print(f"      {metric.name:<9} {metric.description} ({direction})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from peftbench.api import run

    settings = {name: given for name, given in vars(args).items() if name not in ("command", "columns")}
    board = run(**settings)
    print(_table(board, args.columns))
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


def _leaderboard(args: argparse.Namespace) -> int:
    from pathlib import Path

    from peftbench.leaderboard import Leaderboard

    if not Path(args.out).is_dir():
        raise PeftbenchError(f"results folder '{args.out}' does not exist: pass the --out of a run")
    board = Leaderboard.from_dir(args.out)
    if args.aggregate:
        from peftbench.leaderboard.report import aggregate_markdown, csv

        frame = board.aggregate()
        print(aggregate_markdown(frame) if args.format == "markdown" else csv(frame), end="")
    else:
        print(_table(board, args.columns) if args.format == "markdown" else board.to_csv(), end="")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from peftbench.docgen import build_site
    from peftbench.docgen.benchmark_pages import DEFAULT_RESULTS
    from peftbench.docgen.build import DEFAULT_PREVIOUS

    benchmarks = args.benchmarks or (DEFAULT_RESULTS if DEFAULT_RESULTS.is_dir() else None)
    previous = args.previous or (DEFAULT_PREVIOUS if DEFAULT_PREVIOUS.is_dir() else None)
    built = build_site(args.records, args.site, benchmarks_dir=benchmarks, previous_dir=previous)
    print(
        f"peftbench: wrote {len(built.pages)} pages and {len(built.plots)} plots under {args.site}/ "
        f"from {built.records} records" + (f"; removed {len(built.removed)} stale" if built.removed else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
