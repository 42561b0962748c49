"""Exhaustive search: every candidate, with every tuning seed, trained to the maximum; the best
mean validation score wins (edge extension included, as in every strategy here)."""

from __future__ import annotations

from peftbench.runs.search.base import Candidate, Rounds


class GridSearch(Rounds):
    name = "grid"

    def first_step(self) -> int:
        return self.setup.maximum

    def next_round(self, ranked_alive: list[Candidate]) -> None:
        return None  # one round, at the maximum
