"""The search interface, and the rounds every strategy here is built from.

The sweep asks a search for runs, executes them, tells it their records, until it asks nothing::

    while batch := search.ask():
        search.tell(execute(batch))

A round trains every live candidate with the round's seeds to the round's step; when the best is at
the edge of a numeric key, the next value beyond joins the round (``extension``); then the
strategy decides who goes on, to which step. Survivors continue their own runs (``resume``: the
saved training state of their previous round), so nothing is trained twice. A search keeps no
state but what its records say: the same records give the same decisions and run ids, so a sweep
killed at any moment resumes to the same choice.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic.fields import FieldInfo

from peftbench.formatting import hp_text
from peftbench.methods.base import Method
from peftbench.records import RunRecord
from peftbench.runs.search.extension import Extension
from peftbench.runs.selection import LOSS_METRIC, Criterion, Score, ranked
from peftbench.runs.spec import RunSpec

#: Search strategies by name, filled as their modules load (``peftbench.runs.search``).
STRATEGIES: dict[str, type[Search]] = {}


def search_space(method: Method, overrides: dict[str, Any] | None) -> dict[str, list[Any]]:
    """The method's search space minus the keys the user fixed with ``--hp`` (or ``--budget``)."""
    fixed = set(overrides or {})
    return {key: values for key, values in method.tuning_grid().items() if key not in fixed}


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the values of ``grid``, in its order (none for an empty grid)."""
    if not grid:
        return []
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


@dataclass(frozen=True)
class SearchSetup:
    """What a search of one method's hyper-parameters is given by the sweep."""

    method: str
    grid: dict[str, list[Any]]  # the search space, keys fixed by --hp or --budget left out
    fields: dict[str, FieldInfo]  # the method's hyper-parameter declarations (search ranges)
    check: Callable[[dict[str, Any]], None]  # raises PeftbenchError for a combination the method refuses
    spawn: Callable[[dict[str, Any], int, int, str | None], RunSpec]  # (values, seed, until, resume)
    seeds: tuple[int, ...]  # the tuning seeds (``--tune-seeds``), the first used alone where one is
    steps: tuple[int, ...]  # checkpoint steps over the maximum, the last being the maximum
    eta: int = 2
    first_share: float = 0.25
    extension_limit: int = 3
    criterion: Criterion = field(default_factory=Criterion)  # the task's primary metric on validation

    @property
    def maximum(self) -> int:
        return self.steps[-1]

    def step_at(self, steps: float) -> int:
        """The first checkpoint at or after ``steps`` (a round always ends on a checkpoint)."""
        return next((step for step in self.steps if step >= steps - 1e-9), self.maximum)


class Search(ABC):
    """How ``--tune`` chooses one method's hyper-parameters: ask for runs, be told their records."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            STRATEGIES[cls.name] = cls

    @abstractmethod
    def ask(self) -> list[RunSpec]:
        """The next runs to execute, all independent of each other; none: the search is decided."""

    @abstractmethod
    def tell(self, records: dict[str, RunRecord]) -> None:
        """The records of the runs last asked for, by run id (complete or not)."""

    @abstractmethod
    def result(self) -> dict[str, Any]:
        """What the final records store as ``tuning``: the choice, every candidate, why it stopped."""

    @abstractmethod
    def expected_runs(self) -> int:
        """How many runs the search plans before any extension (for progress lines)."""

    def continues(self, seed: int) -> str | None:
        """The tuning run whose saved state a final run of the choice with ``seed`` continues."""
        return None

    def released(self) -> list[str]:
        """Runs whose saved states nothing will continue any more (asked once, then forgotten)."""
        return []

    def notes(self) -> list[str]:
        """Lines for the progress output since last asked (an extension, a round decided)."""
        return []


@dataclass
class Candidate:
    """One combination of values and what its runs gave, round by round."""

    values: dict[str, Any]
    extended: bool = False  # added beyond the search space by the extension
    runs: dict[int, dict[int, str]] = field(default_factory=dict)  # round -> seed -> run id
    steps: dict[int, int] = field(default_factory=dict)  # round -> the step it trained to
    scores: dict[int, Score] = field(default_factory=dict)  # round -> mean over the round's seeds
    statuses: dict[int, str] = field(default_factory=dict)  # round -> "complete" or the first failure

    def last_run(self, seed: int) -> str | None:
        """The latest run of this candidate with ``seed`` (whose state a continuation resumes)."""
        done = [runs[seed] for _, runs in sorted(self.runs.items()) if seed in runs]
        return done[-1] if done else None

    @property
    def last_round(self) -> int:
        return max(self.runs)


class Rounds(Search):
    """Rounds of runs with edge extension; a strategy says where rounds end and who goes on."""

    def __init__(self, setup: SearchSetup) -> None:
        self.setup = setup
        self.extension = Extension(setup.grid, setup.fields, setup.extension_limit, setup.check)
        self.candidates = [Candidate(values) for values in combinations(setup.grid)]
        self.alive = list(self.candidates)
        self.round, self.step = 0, self.first_step()
        self.seed_count = self.seeds_for(len(self.alive), self.step, 1)
        self.chosen: Candidate | None = None
        self.done = not self.candidates
        self.records: dict[str, RunRecord] = {}
        self.rounds: list[dict[str, int]] = []  # per round: its step, candidates and seeds
        self._released: list[str] = []
        self._notes: list[str] = []

    # -- what a strategy decides ------------------------------------------------------------
    @abstractmethod
    def first_step(self) -> int:
        """The step the first round trains every candidate to."""

    @abstractmethod
    def next_round(self, ranked_alive: list[Candidate]) -> tuple[list[Candidate], int] | None:
        """After a round: the candidates that go on and the step they train to; None: decided."""

    def seeds_for(self, candidates: int, step: int, before: int) -> int:
        """How many tuning seeds a round of ``candidates`` to ``step`` uses (``before``: the last round's)."""
        return len(self.setup.seeds)

    def later_runs(self, candidates: int, step: int, seeds: int) -> int:
        """Runs of the rounds after one of ``candidates`` to ``step`` with ``seeds``, as planned."""
        return 0

    def expected_runs(self) -> int:
        """Runs asked so far, plus those the plan still holds (extensions add to it as they come)."""
        asked = len(self.run_ids())
        if self.done:
            return asked
        pending = sum(self.seed_count - len(c.runs.get(self.round, {})) for c in self.alive)
        return asked + pending + self.later_runs(len(self.alive), self.step, self.seed_count)

    # -- the interface -------------------------------------------------------------------------
    def ask(self) -> list[RunSpec]:
        if self.done:
            return []
        until = self.step if self.step < self.setup.maximum else None
        batch = []
        for candidate in self.alive:
            runs = candidate.runs.setdefault(self.round, {})
            for seed in self.setup.seeds[: self.seed_count]:
                if seed in runs:
                    continue  # asked and told this round already
                spec = self.setup.spawn(candidate.values, seed, until, candidate.last_run(seed))
                runs[seed] = spec.run_id
                candidate.steps[self.round] = self.step
                batch.append(spec)
        return batch

    def tell(self, records: dict[str, RunRecord]) -> None:
        self.records.update(records)
        for candidate in self.alive:
            self._score(candidate)
        order = ranked(self.alive, lambda c: c.scores[self.round])
        if not order:  # no candidate has a score: the result says so, and defaults are used
            self.done = True
            return
        tried = [c.values for c in self.candidates]
        new = self.extension.beyond(order[0].values, tried)
        if new:
            for values in new:
                candidate = Candidate(values, extended=True)
                self.candidates.append(candidate)
                self.alive.append(candidate)
            shown = "; ".join(hp_text(values) for values in new)
            self._notes.append(
                f"{self.setup.method}: the best ({hp_text(order[0].values)}) is at the edge of the values "
                f"tried: trying {shown}"
            )
            return
        self.rounds.append({"step": self.step, "candidates": len(self.alive), "seeds": self.seed_count})
        going_on = self.next_round(order)
        if going_on is None:
            self.done, self.chosen = True, order[0]
            return
        survivors, step = going_on
        going = {id(candidate) for candidate in survivors}
        for candidate in self.alive:
            if id(candidate) not in going:  # nothing will continue its runs
                self._released += [run for runs in candidate.runs.values() for run in runs.values()]
            elif self.round > 0:
                self._released += list(candidate.runs.get(self.round - 1, {}).values())
        self.alive, self.step, self.round = list(survivors), step, self.round + 1
        self.seed_count = self.seeds_for(len(self.alive), step, self.seed_count)

    def _score(self, candidate: Candidate) -> None:
        records = [self.records.get(run) for run in candidate.runs[self.round].values()]
        failed = next((r.status for r in records if r is None or r.status != "complete"), None)
        candidate.statuses[self.round] = failed or "complete"
        scores = [self.setup.criterion.score(r.metrics) for r in records if r is not None]
        candidate.scores[self.round] = Score(None) if failed else Score.mean(scores)

    def continues(self, seed: int) -> str | None:
        chosen = self.chosen
        if chosen is None or chosen.steps.get(chosen.last_round) != self.setup.maximum:
            return None
        return chosen.runs[chosen.last_round].get(seed)

    def released(self) -> list[str]:
        released, self._released = self._released, []
        return released

    def notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes

    def run_ids(self) -> list[str]:
        """Every run this search asked for, in order."""
        return [run for c in self.candidates for runs in c.runs.values() for run in runs.values()]

    def result(self) -> dict[str, Any]:
        rows = [self._row(c) for c in self.candidates]
        settings = {
            "tune_seeds": list(self.setup.seeds),
            "max_steps": self.setup.maximum,
            "extension_limit": self.setup.extension_limit,
            **self.settings(),
        }
        result: dict[str, Any] = {
            "search": self.name,
            "settings": settings,
            "score": self.setup.criterion.name,
            "chosen": dict(self.chosen.values) if self.chosen else {},
            "candidates": rows,
            "rounds": list(self.rounds),
            "runs": self.run_ids(),
        }
        if self.chosen is not None:
            tried = [c.values for c in self.candidates]
            result["stops"] = self.extension.stops(self.chosen.values, tried)
        else:
            result["note"] = "no tuning run completed; defaults used"
        return result

    def settings(self) -> dict[str, Any]:
        """The strategy's own settings, as the records keep them."""
        return {}

    def _row(self, candidate: Candidate) -> dict[str, Any]:
        last = candidate.last_round
        score = candidate.scores.get(last, Score(None))
        history = [
            [candidate.steps[r], candidate.scores[r].value, len(candidate.runs[r])]
            for r in sorted(candidate.scores)
        ]
        return {
            "hyperparameters": dict(candidate.values),
            "status": candidate.statuses.get(last, "failed"),
            self.setup.criterion.key: score.value,
            LOSS_METRIC: score.loss,
            "step": candidate.steps.get(last),
            "seeds": len(candidate.runs[last]),
            "run_id": next(iter(candidate.runs[last].values()), None),
            "rounds": history,
            "extended": candidate.extended,
        }


class Together:
    """Several methods' searches as one: each asks its runs, all execute in one batch."""

    def __init__(self, searches: dict[str, Search]) -> None:
        self.searches = searches
        self._asked: dict[str, list[str]] = {}

    def ask(self) -> list[RunSpec]:
        batch: list[RunSpec] = []
        self._asked = {}
        for name, search in self.searches.items():
            specs = search.ask()
            if specs:
                self._asked[name] = [spec.run_id for spec in specs]
                batch += specs
        return batch

    def tell(self, records: dict[str, RunRecord]) -> None:
        for name, asked in self._asked.items():
            self.searches[name].tell({run: records[run] for run in asked})
