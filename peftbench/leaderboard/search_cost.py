"""What each method's hyper-parameter search cost, phase by phase, beside what an exhaustive search
of the same candidates would have cost: a pure function of the records.

Measured: the sum over the search's tuning runs and the row's final runs of what each run itself
spent (a run that continued a saved state counts only its own steps). Exhaustive, estimated:
every candidate the search tried, with every tuning seed, trained from the start to the maximum
(or to the step where patience stopped it in this search, where it was seen), at the seconds per
step and per checkpoint evaluation measured in this search's own runs of the method; its final
runs cost what they cost here (both searches end with the winner's tuning seeds at the maximum,
which the final runs continue). Records written before 0.4 searched one seed exhaustively, so
there both figures are the same runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from peftbench.records import RunRecord

PHASES = ("training", "checkpoint evaluations", "test", "reload", "inference timing", "other")


@dataclass
class SearchCost:
    """One tuned row's search: its runs and seconds per phase, measured and exhaustive."""

    method: str
    search: str  # the strategy, as the records name it ("grid" for records before 0.4)
    runs: int  # tuning runs this search trained
    exhaustive_runs: int  # tuning runs an exhaustive search of the same candidates trains
    measured: dict[str, float] = field(default_factory=dict)
    exhaustive: dict[str, float] = field(default_factory=dict)


def search_cost(final: list[RunRecord], every: list[RunRecord]) -> SearchCost | None:
    """The search behind the final records of one row (None: the row was not tuned)."""
    tuning = next((r.tuning for r in final if r.tuning), None)
    if not tuning:
        return None
    by_id = {r.run_id: r for r in every}
    tuned = [by_id[run] for run in _tuning_runs(tuning) if run in by_id]
    complete = [r for r in final if r.status == "complete"]
    measured = phase_totals([*tuned, *complete])
    settings = tuning.get("settings") or {}
    seeds = len(settings.get("tune_seeds") or [0])
    candidates = tuning.get("candidates") or []
    maximum = settings.get("max_steps") or max((_steps(r)[1] for r in [*tuned, *complete]), default=0)
    pairs = len(candidates) * seeds
    train_rate = _rate(tuned, "training", lambda r: _steps(r)[1] - _steps(r)[0])
    eval_rate = _rate(tuned, "checkpoint evaluations", _evaluations)
    per_run = _evaluations_per_run(tuned)
    stopped = {(json.dumps(r.hyperparameters, sort_keys=True), r.seed): r for r in tuned if _stopped(r)}
    steps = pairs * maximum - sum(maximum - (r.training or {})["last_step"] for r in stopped.values())
    finals = phase_totals(complete)
    exhaustive = dict(finals)
    exhaustive["training"] += steps * train_rate
    exhaustive["checkpoint evaluations"] += pairs * per_run * eval_rate
    other = sum(run_phases(r)["other"] for r in tuned) / len(tuned) if tuned else 0.0
    exhaustive["other"] += pairs * other
    return SearchCost(
        method=final[0].method,
        search=str(tuning.get("search") or "grid"),
        runs=len(tuned),
        exhaustive_runs=pairs,
        measured=measured,
        exhaustive=exhaustive,
    )


def _tuning_runs(tuning: dict) -> list[str]:
    """Every tuning run of the search: listed since 0.4, before that one per candidate."""
    runs = tuning.get("runs")
    if isinstance(runs, list):
        return [str(run) for run in runs]
    return [str(c["run_id"]) for c in tuning.get("candidates") or [] if c.get("run_id")]


def run_phases(record: RunRecord) -> dict[str, float]:
    """What ``record`` itself spent, per phase (seconds)."""
    c = {key: float(value or 0.0) for key, value in record.costs.items()}
    new = record.training is not None  # since 0.4: every validation evaluation is a checkpoint's
    evaluate_rest = c.get("evaluate_seconds", 0.0) - c.get("eval_seconds", 0.0)
    checkpoints = c.get("spent_checkpoint_seconds", c.get("curve_eval_seconds", 0.0))
    return {
        "training": c.get("spent_train_seconds", c.get("train_seconds", 0.0)),
        "checkpoint evaluations": checkpoints + (0.0 if new else evaluate_rest),
        "test": c.get("eval_seconds", 0.0),
        "reload": c.get("reload_seconds", 0.0),
        "inference timing": c.get("inference_seconds", 0.0),
        "other": c.get("prepare_seconds", 0.0) + c.get("save_seconds", 0.0) + (evaluate_rest if new else 0.0),
    }


def phase_totals(records: list[RunRecord]) -> dict[str, float]:
    """Seconds per phase, summed over ``records`` (what each run itself spent)."""
    totals = dict.fromkeys(PHASES, 0.0)
    for record in records:
        for phase, seconds in run_phases(record).items():
            totals[phase] += seconds
    return totals


def _steps(record: RunRecord) -> tuple[int, int]:
    """(the step the run started from, the last step it trained)."""
    training = record.training or {}
    last = int(training.get("last_step", record.costs.get("train_steps") or 0))
    return int(training.get("from_step", 0)), last


def _evaluations(record: RunRecord) -> int:
    """Validation evaluations the run itself made (before 0.4: its curve, the last one included)."""
    start = _steps(record)[0]
    return sum(1 for step, _ in record.curves.get(f"validation_{record.metric}", []) if step > start)


def _evaluations_per_run(records: list[RunRecord]) -> int:
    """Validation evaluations of a run trained to the maximum (the most any of ``records`` made)."""
    return max((len(r.curves.get(f"validation_{r.metric}", [])) for r in records), default=0)


def _stopped(record: RunRecord) -> bool:
    return bool((record.training or {}).get("stopped_early"))


def _rate(records: list[RunRecord], phase: str, count) -> float:
    """Seconds per unit (step, evaluation) of ``phase`` over ``records``."""
    units = sum(count(r) for r in records)
    return sum(run_phases(r)[phase] for r in records) / units if units else 0.0
