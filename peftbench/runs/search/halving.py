"""Successive halving: every candidate trains a first share of the maximum; the best 1/eta continue
from where they stopped, for eta times as many steps, until one remains, which trains to the
maximum (Jamieson & Talwalkar, 2016; Li et al., 2018 for the budgets).

Seeds are bought where the choice is made: the round that leaves one candidate (fewer than 2 eta
of them) or one at the maximum scores each candidate by its mean over ``--tune-seeds`` seeds;
earlier rounds, which only drop clear losers, use the first seed. The winner's seeds end at the
maximum, so the final runs of those seeds continue them instead of training again.

Why not Optuna's SuccessiveHalvingPruner or Ray Tune's ASHA: both are asynchronous (a trial is
promoted or pruned by what the trials that happened to report before it scored), so the choice
depends on timing and differs between executors and reruns; both keep their own state (a study
database, an experiment folder) beside our records, so a sweep killed with ``kill -9`` resumes from
theirs, not from the records; neither continues a run from our saved training states, and Ray
Tune would make Ray a requirement of the local executor. Synchronous halving over a fixed grid is
a few lines on top of the rounds every strategy here shares, and keeps all three promises.
"""

from __future__ import annotations

from typing import Any

from peftbench.runs.search.base import Candidate, Rounds


class SuccessiveHalving(Rounds):
    name = "halving"

    def first_step(self) -> int:
        if len(self.candidates) == 1:  # nothing to compare: it trains to the maximum at once
            return self.setup.maximum
        return self.setup.step_at(self.setup.first_share * self.setup.maximum)

    def next_round(self, ranked_alive: list[Candidate]) -> tuple[list[Candidate], int] | None:
        if self.step >= self.setup.maximum:
            return None
        survivors = ranked_alive[: self.keep(len(self.alive))]
        return survivors, self.next_step(len(survivors), self.step)

    def keep(self, candidates: int) -> int:
        """The best 1/eta, rounded down (as Hyperband does), at least one."""
        return max(1, candidates // self.setup.eta)

    def next_step(self, survivors: int, step: int) -> int:
        """One survivor trains to the maximum; more train eta times as far (at most the maximum)."""
        return self.setup.maximum if survivors == 1 else self.setup.step_at(step * self.setup.eta)

    def seeds_for(self, candidates: int, step: int, before: int) -> int:
        deciding = self.keep(candidates) == 1 or step >= self.setup.maximum
        return len(self.setup.seeds) if deciding or before > 1 else 1

    def later_runs(self, candidates: int, step: int, seeds: int) -> int:
        total = 0
        while candidates and step < self.setup.maximum:
            candidates = self.keep(candidates)
            step = self.next_step(candidates, step)
            seeds = self.seeds_for(candidates, step, seeds)
            total += candidates * seeds
        return total

    def settings(self) -> dict[str, Any]:
        return {"eta": self.setup.eta, "first_share": self.setup.first_share}
