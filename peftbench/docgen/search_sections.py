"""What a leaderboard page says about each method's hyper-parameter search: the candidates with
their validation scores, the rounds, why the search stopped at each key, and what the search cost
per phase beside an exhaustive search of the same candidates (``leaderboard.search_cost``)."""

from __future__ import annotations

from collections.abc import Sequence

from peftbench.docgen.markup import Cell, cell, html_table
from peftbench.formatting import escape, hp_text, number, value
from peftbench.leaderboard.configurations import edge_notes
from peftbench.leaderboard.search_cost import PHASES, SearchCost
from peftbench.records import RunRecord
from peftbench.tasks.metrics import Metric

STOP_WORDS = {
    "inside": "inside the values tried",
    "at bound": "the end of the range it may be searched in: the search cannot go further",
    "at limit": "at the edge of the values tried when the extension limit stopped the search: the best "
    "value may lie beyond it",
}
STRATEGY_WORDS = {"halving": "successive halving", "grid": "exhaustive (every candidate to the maximum)"}


def tuning_text(records: list[RunRecord], metric: Metric) -> str:
    """The candidates tried on validation (scored by the table's ``metric``) and the one chosen,
    from the final records' ``tuning``."""
    tuning = next((record.tuning for record in records if record.tuning), None)
    if not tuning:
        return "not tuned (defaults or --hp)"
    chosen = tuning.get("chosen") or {}
    lines = [_how(tuning)] if tuning.get("search") else []
    for candidate in tuning.get("candidates") or []:
        shown = metric.text(candidate.get(f"validation_{metric.name}"))
        score = f"validation {metric.title} {shown}" if shown else str(candidate.get("status"))
        if candidate.get("step") is not None:
            score += f" ({_seeds(candidate.get('seeds') or 1, 'mean of ')}, step {candidate['step']})"
        mark = " (chosen)" if candidate.get("hyperparameters") == chosen else ""
        extended = " (beyond the search space)" if candidate.get("extended") else ""
        lines.append(f"{hp_text(candidate.get('hyperparameters') or {})}{extended}: {score}{mark}")
    if tuning.get("note"):
        lines.append(str(tuning["note"]))
    stops = tuning.get("stops")
    if isinstance(stops, dict):
        lines += [f"{key}: {STOP_WORDS.get(stop, stop)}" for key, stop in stops.items()]
    else:
        for key in edge_notes(tuning):
            lines.append(
                f"{key}: the choice is the end of its search range; the best value may lie beyond it"
            )
    return "<br>".join(escape(line, "html") for line in lines) or "no candidates"


def _how(tuning: dict) -> str:
    """``successive halving (eta 2, first share 0.25), 3 tuning seeds, maximum 801 steps; rounds: ...``."""
    settings = tuning.get("settings") or {}
    search = str(tuning.get("search"))
    words = STRATEGY_WORDS.get(search, search)
    if "eta" in settings:
        words += f" (eta {settings['eta']}, first share {value(settings.get('first_share'))})"
    tuning_seeds = _seeds(len(settings.get("tune_seeds") or []))
    words += f", {tuning_seeds.replace('seed', 'tuning seed')}, maximum {settings.get('max_steps')} steps"
    rounds = [
        f"{r.get('candidates')} to step {r.get('step')} ({_seeds(r.get('seeds'))})"
        for r in tuning.get("rounds") or []
    ]
    return words + (f"; rounds: {', '.join(rounds)}" if rounds else "")


def _seeds(count: object, many: str = "") -> str:
    """``1 seed``, ``mean of 3 seeds``."""
    return "1 seed" if count == 1 else f"{many}{count} seeds"


def search_cost_table(costs: Sequence[SearchCost]) -> str:
    """Seconds per phase of each tuned row's search, with the exhaustive estimate below it."""
    if not costs:
        return "<p>No method on this page was tuned.</p>"
    headers = ["method", "search", "tuning runs", *[f"{phase} s" for phase in PHASES], "total s"]
    rows: list[list[Cell]] = []
    totals = {"measured": dict.fromkeys(PHASES, 0.0), "exhaustive": dict.fromkeys(PHASES, 0.0)}
    for cost in costs:
        for kind, seconds, runs, search in (
            ("measured", cost.measured, cost.runs, cost.search),
            ("exhaustive", cost.exhaustive, cost.exhaustive_runs, "exhaustive (estimate)"),
        ):
            for phase in PHASES:
                totals[kind][phase] += seconds[phase]
            rows.append(_cost_row(cost.method, search, runs, seconds))
    if len(costs) > 1:
        rows.append(_cost_row("all tuned rows", "this page's searches", None, totals["measured"]))
        rows.append(_cost_row("all tuned rows", "exhaustive (estimate)", None, totals["exhaustive"]))
    return html_table(headers, rows, label="search cost")


def _cost_row(method: str, search: str, runs: int | None, seconds: dict[str, float]) -> list[Cell]:
    total = sum(seconds.values())
    return [
        cell(method),
        cell(search),
        cell("" if runs is None else runs, runs),
        *[cell(number(seconds[phase], ",.0f"), seconds[phase]) for phase in PHASES],
        cell(number(total, ",.0f"), total),
    ]


SEARCH_COST_NOTE = (
    "<p>Seconds each tuned row's search spent, per phase, over its tuning runs and its final runs "
    "(a run that continued a saved training state counts only what it trained itself; test, reload "
    "and inference timing are the final runs'), and below it an estimate of what an exhaustive "
    "search of the same candidates would have spent: every candidate the search tried, with every "
    "tuning seed, trained from the start to the maximum (to the step where patience stopped it, "
    "where this search saw that), at the seconds per step and per checkpoint evaluation measured "
    "in this search's own runs, and the same final runs. Records from before 0.4 searched "
    "exhaustively with one seed: both lines are then the same runs. Timings are only comparable "
    "between runs on the same machine.</p>"
)
