"""Successive halving against an exhaustive search of the same candidates, from two results folders.

Run the same sweep twice, once per strategy, each into its own folder on an otherwise idle machine
(timings of runs that share a machine with other work mean nothing), then print the comparison:

    peftbench run --model minilm --dataset rotten_tomatoes --methods lora,ia3 --num-seeds 3 --tune \\
        --search halving --no-references --out runs/halving
    peftbench run --model minilm --dataset rotten_tomatoes --methods lora,ia3 --num-seeds 3 --tune \\
        --search grid --no-references --out runs/grid
    .venv/bin/python benchmarks/search_comparison.py runs/halving runs/grid

Per method, a Markdown table of each phase's seconds (training, checkpoint evaluations, test,
reload, inference timing, other) for the halving search, for the exhaustive search as the halving
page estimates it from halving's own runs, and for the exhaustive search as measured; then the
values each search chose with their validation scores (mean over the tuning seeds at the
maximum), and what the exhaustive search measured for halving's choice. The halving choice
holds if it is the exhaustive one, or scores as well in the exhaustive search's own runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbench.formatting import hp_text, number
from peftbench.leaderboard.search_cost import PHASES, SearchCost, search_cost
from peftbench.records import read_records


def searches(folder: Path) -> dict[tuple[str, str, str], tuple[SearchCost, dict]]:
    """(model, dataset, method) -> the search's cost and the final records' ``tuning``."""
    records = read_records(folder)
    found = {}
    for key in sorted({(r.model, r.dataset, r.method) for r in records if r.stage == "final" and r.tuning}):
        final = [r for r in records if (r.model, r.dataset, r.method) == key and r.stage == "final"]
        cost = search_cost(final, records)
        if cost is not None:
            found[key] = (cost, next(r.tuning for r in final if r.tuning))
    return found


def scores(tuning: dict) -> dict[str, tuple[float | None, int, int | None]]:
    """Each candidate's (validation score, seeds, step) as its search last measured it, by values."""
    return {
        hp_text(c.get("hyperparameters") or {}): (_validation_score(c), c.get("seeds"), c.get("step"))
        for c in tuning.get("candidates") or []
    }


def _validation_score(candidate: dict) -> float | None:
    """The candidate's score on the search's metric (``validation_<metric>``, not its loss)."""
    keys = [key for key in candidate if key.startswith("validation_") and key != "validation_loss"]
    return candidate[keys[0]] if keys else None


def cost_row(name: str, runs: int, seconds: dict[str, float]) -> str:
    cells = [name, str(runs), *(number(seconds[phase], ",.0f") for phase in PHASES)]
    return "| " + " | ".join([*cells, number(sum(seconds.values()), ",.0f")]) + " |"


def score_text(score: tuple[float | None, int, int | None] | None) -> str:
    if score is None:
        return "not tried"
    value, seeds, step = score
    return f"{number(value, '.2f', 100) or 'failed'}% ({seeds} seeds, step {step})"


def compare(halving_folder: Path, grid_folder: Path) -> str:
    halving, grid = searches(halving_folder), searches(grid_folder)
    lines = []
    for key in sorted(set(halving) | set(grid)):
        model, dataset, method = key
        lines += [f"## {method} ({model} on {dataset})", ""]
        header = ["search", "tuning runs", *(f"{phase} s" for phase in PHASES), "total s"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        if key in halving:
            cost, _ = halving[key]
            lines.append(cost_row(f"{cost.search} (measured)", cost.runs, cost.measured))
            lines.append(cost_row("exhaustive (its page's estimate)", cost.exhaustive_runs, cost.exhaustive))
        if key in grid:
            cost, _ = grid[key]
            lines.append(cost_row(f"{cost.search} (measured)", cost.runs, cost.measured))
        lines.append("")
        grid_scores = scores(grid[key][1]) if key in grid else {}
        for name, found in (("halving", halving), ("exhaustive", grid)):
            if key not in found:
                continue
            tuning = found[key][1]
            chosen = hp_text(tuning.get("chosen") or {})
            own = scores(tuning).get(chosen)
            line = f"- {name} chose {chosen or 'nothing'}: {score_text(own)}"
            if name == "halving" and grid_scores:
                line += f"; the exhaustive search measured it at {score_text(grid_scores.get(chosen))}"
            lines.append(line)
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("halving", type=Path, help="results folder of the --search halving sweep")
    parser.add_argument("grid", type=Path, help="results folder of the --search grid sweep")
    args = parser.parse_args(argv)
    print(compare(args.halving, args.grid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
