"""Search strategies: edge extension, successive halving's rounds, seeds and continuations, ties,
and a halving sweep that is deterministic and resumes after ``kill -9`` to the records of an
uninterrupted one."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

import peftbench
from conftest import keyword_folder
from peftbench.errors import PeftbenchError
from peftbench.leaderboard import Leaderboard
from peftbench.methods.lora import Lora
from peftbench.records import RunRecord, read_records
from peftbench.runs.search import make_search, strategy_names
from peftbench.runs.search.base import SearchSetup
from peftbench.runs.selection import Score, best, ranked
from peftbench.runs.sharing import threads_per_run
from peftbench.settings import sweep_config

LORA_FIELDS = Lora.hyperparameter_model().model_fields
GRID = {"learning_rate": [3e-4, 1e-3, 3e-3, 1e-2]}


def setup(grid=GRID, seeds=(0, 1, 2), steps=tuple(range(1, 9)), limit=3, check=lambda values: None, **extra):
    """A search of lora's learning rate whose runs are named by what they train."""

    def spawn(values, seed, until, resume):
        run_id = f"lr={values['learning_rate']:g}-seed{seed}-to{until or 'max'}"
        return SimpleNamespace(run_id=run_id, values=values, seed=seed, until=until, resume=resume)

    return SearchSetup("lora", grid, LORA_FIELDS, check, spawn, seeds, steps, extension_limit=limit, **extra)


def record(spec, accuracy: float | None, loss: float | None = 0.5, status="complete") -> RunRecord:
    metrics = {} if accuracy is None else {"validation_accuracy": accuracy, "validation_loss": loss}
    return RunRecord(spec.run_id, status, "m", "d", "lora", spec.seed, stage="tune", metrics=metrics)


def drive(search, score):
    """Run a search to its end with ``score(spec) -> (accuracy, loss)``; returns every batch asked."""
    batches = []
    while batch := search.ask():
        batches.append(batch)
        search.tell({spec.run_id: record(spec, *score(spec)) for spec in batch})
    return batches


def peaked_at(rate: float):
    """Validation accuracy highest at learning rate ``rate``, falling off on a log scale."""
    return lambda spec: (1.0 - 0.1 * (math.log10(spec.values["learning_rate"] / rate)) ** 2, 0.5)


def rates(search) -> list[float]:
    return [c.values["learning_rate"] for c in search.candidates]


def test_strategies_are_found_by_name_and_an_unknown_one_lists_them():
    assert strategy_names() == ["grid", "halving"]
    with pytest.raises(PeftbenchError, match="unknown search 'bayes'; known searches: grid, halving"):
        sweep_config(search="bayes")


def test_a_best_value_at_the_edge_is_extended_with_the_same_spacing_until_it_is_inside():
    search = make_search("grid", setup())
    drive(search, peaked_at(0.03))
    assert rates(search) == [3e-4, 1e-3, 3e-3, 1e-2, 0.0333, 0.1]  # log spacing: x 3.33, then clipped
    result = search.result()
    assert result["chosen"] == {"learning_rate": 0.0333}
    assert result["stops"] == {"learning_rate": "inside"}
    assert [c["extended"] for c in result["candidates"]] == [False] * 4 + [True] * 2


def test_the_declared_bound_stops_the_extension():
    search = make_search("grid", setup())
    drive(search, lambda spec: (spec.values["learning_rate"], 0.5))  # the larger, the better
    assert rates(search)[-2:] == [0.0333, 0.1] and max(rates(search)) == 0.1  # 1e-1: every method's bound
    result = search.result()
    assert result["chosen"] == {"learning_rate": 0.1} and result["stops"] == {"learning_rate": "at bound"}
    board = Leaderboard([final_record(result)])
    assert board.to_frame()["tuned"].tolist() == ["learning_rate=0.1 (at bound)"]


def test_a_method_that_refuses_the_next_value_is_at_its_bound_too():
    def check(values):
        if values["learning_rate"] > 0.02:
            raise PeftbenchError("too large")

    search = make_search("grid", setup(check=check))
    drive(search, lambda spec: (spec.values["learning_rate"], 0.5))
    assert rates(search) == GRID["learning_rate"] and search.result()["stops"] == {
        "learning_rate": "at bound"
    }


def test_the_extension_limit_stops_it_and_says_so():
    search = make_search("grid", setup(limit=2))
    drive(search, lambda spec: (1.0 - spec.values["learning_rate"], 0.5))  # the smaller, the better
    assert rates(search)[4:] == [9e-05, 2.7e-05]  # two values added below, then the limit
    result = search.result()
    assert result["chosen"] == {"learning_rate": 2.7e-05} and result["stops"] == {"learning_rate": "at limit"}
    frame = Leaderboard([final_record(result)]).to_frame()
    assert frame["tuned"].tolist() == ["learning_rate=2.7e-05 (at limit)"]


def test_keys_with_one_value_or_no_numbers_are_not_extended():
    grid = {"learning_rate": [1e-3], "target_modules": [["query"], ["value"]]}
    search = make_search("grid", setup(grid=grid))
    drive(search, lambda spec: (0.5, 0.5))
    assert len(search.candidates) == 2 and search.result()["stops"] == {}


def test_successive_halving_rounds_seeds_and_continuations():
    search = make_search("halving", setup())  # 4 candidates, checkpoints at steps 1..8
    assert search.expected_runs() == 4 + 2 * 3 + 3
    batches = drive(search, peaked_at(3e-3))
    assert [[spec.run_id for spec in batch] for batch in batches] == [
        # Round 1: every candidate to a quarter of the maximum, the first seed only.
        ["lr=0.0003-seed0-to2", "lr=0.001-seed0-to2", "lr=0.003-seed0-to2", "lr=0.01-seed0-to2"],
        # Round 2 decides between two: each is scored over three seeds, to twice as far.
        ["lr=0.003-seed0-to4", "lr=0.003-seed1-to4", "lr=0.003-seed2-to4",
         "lr=0.001-seed0-to4", "lr=0.001-seed1-to4", "lr=0.001-seed2-to4"],
        # The winner's seeds train on to the maximum, which the final runs continue.
        ["lr=0.003-seed0-tomax", "lr=0.003-seed1-tomax", "lr=0.003-seed2-tomax"],
    ]  # fmt: skip
    resumed = {spec.run_id: spec.resume for batch in batches for spec in batch}
    assert resumed["lr=0.003-seed0-to4"] == "lr=0.003-seed0-to2"  # continued, not trained again
    assert resumed["lr=0.003-seed1-to4"] is None  # a seed bought for this round starts afresh
    assert resumed["lr=0.003-seed1-tomax"] == "lr=0.003-seed1-to4"
    assert [search.continues(seed) for seed in (0, 1, 2, 3)] == [
        "lr=0.003-seed0-tomax", "lr=0.003-seed1-tomax", "lr=0.003-seed2-tomax", None,
    ]  # fmt: skip
    result = search.result()
    assert result["chosen"] == {"learning_rate": 3e-3}
    assert result["rounds"] == [
        {"step": 2, "candidates": 4, "seeds": 1},
        {"step": 4, "candidates": 2, "seeds": 3},
        {"step": 8, "candidates": 1, "seeds": 3},
    ]
    assert len(result["runs"]) == search.expected_runs() == 13


def test_halving_keeps_the_best_half_rounded_down_and_buys_seeds_for_the_round_that_decides():
    grid = {"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]}
    search = make_search("halving", setup(grid=grid))
    assert search.expected_runs() == 6 + 3 * 3 + 3
    drive(search, peaked_at(3e-3))
    assert search.result()["rounds"] == [
        {"step": 2, "candidates": 6, "seeds": 1},
        {"step": 4, "candidates": 3, "seeds": 3},  # it leaves one: three seeds each
        {"step": 8, "candidates": 1, "seeds": 3},
    ]


def test_halving_releases_the_states_nothing_will_continue():
    search = make_search("halving", setup())
    released = []
    while batch := search.ask():
        search.tell({spec.run_id: record(spec, *peaked_at(3e-3)(spec)) for spec in batch})
        released += search.released()
    assert "lr=0.0003-seed0-to2" in released and "lr=0.003-seed0-to2" in released  # lost, or continued
    assert not {f"lr=0.003-seed{seed}-tomax" for seed in (0, 1, 2)} & set(released)  # the finals need these


def test_halving_with_one_candidate_trains_it_to_the_maximum_at_once():
    search = make_search("halving", setup(grid={"learning_rate": [1e-3]}))
    (batch,) = drive(search, lambda spec: (0.8, 0.5))
    assert [spec.until for spec in batch] == [None, None, None]


def test_ties_go_to_the_lower_validation_loss_and_a_missing_loss_never_wins_one():
    tied = [Score(0.8, None), Score(0.8, 0.4), Score(0.8, 0.3), Score(0.7, 0.1)]
    assert best(tied, lambda s: s) == Score(0.8, 0.3)
    assert ranked(tied, lambda s: s) == [Score(0.8, 0.3), Score(0.8, 0.4), Score(0.8, None), Score(0.7, 0.1)]
    first, second = Score(0.8, None), Score(0.8, None)
    assert best([first, second], lambda s: s) is first  # a complete tie: the earlier
    assert Score.mean([Score(0.8, 0.2), Score(0.6, None)]) == Score(0.7, None)  # a missing loss stays missing
    assert best([Score(None), Score(float("nan"), 0.1)], lambda s: s) is None

    search = make_search("grid", setup(grid={"learning_rate": [1e-3, 3e-3, 1e-2]}, seeds=(0,)))
    losses = {1e-3: None, 3e-3: 0.2, 1e-2: 0.3}
    drive(search, lambda spec: (0.9, losses[spec.values["learning_rate"]]))
    assert search.result()["chosen"] == {"learning_rate": 3e-3}


def test_a_candidate_with_a_failed_seed_is_not_chosen():
    search = make_search("grid", setup(grid={"learning_rate": [1e-3, 3e-3, 1e-2]}, seeds=(0, 1)))

    def run(spec):  # 3e-3 scores best, but diverges with seed 1
        best = spec.values["learning_rate"] == 3e-3
        return record(spec, 0.9 if best else 0.5, status="diverged" if best and spec.seed else "complete")

    while batch := search.ask():
        search.tell({spec.run_id: run(spec) for spec in batch})
    result = search.result()
    assert result["chosen"] != {"learning_rate": 3e-3}
    assert result["candidates"][1]["status"] == "diverged"


def final_record(tuning: dict) -> RunRecord:
    """A final record of the choice ``tuning`` made, as the sweep writes it."""
    return RunRecord(
        "lora-seed0", "complete", "m", "d", "lora", 0, tuning=tuning, hyperparameters=dict(tuning["chosen"]),
        metrics={"accuracy": 0.9, "macro_f1": 0.9, "loss": 0.3}, costs={"train_seconds": 1.0},
    )  # fmt: skip


# -- a real halving sweep ---------------------------------------------------------------------------

HALVING = dict(model="tiny-gpt2", methods="lora", seeds="0,1", tune=True, tune_seeds=2, max_steps=8,
               checkpoints=4, extension_limit=1, references=False, measure_inference=False)  # fmt: skip
#: What may differ between two runs of the same sweep: when it ran, how long things took and how
#: busy the machine was meanwhile.
MEASURED = (
    "_seconds", "_per_second", "latency_ms", "throughput", "flops_utilisation", "peak_memory_mb",
    "load_average_start", "load_average_end", "cpu_share",
)  # fmt: skip


def comparable(record: RunRecord) -> dict:
    """A record without its time stamps, measured times and the note of a run taken over from the
    killed sweep (which only says so)."""
    data = {k: v for k, v in vars(record).items() if k not in ("started_at", "finished_at", "environment")}
    data["costs"] = {k: v for k, v in record.costs.items() if not k.endswith(MEASURED)}
    data["notes"] = [note for note in record.notes if not note.startswith("claim taken over from")]
    return data


@pytest.fixture(scope="module")
def halving_data(tmp_path_factory):
    return keyword_folder(tmp_path_factory.mktemp("halving"), train=64, validation=32, test=32)


def cli_options(settings: dict) -> list[str]:
    """``peftbench run`` options meaning ``settings``."""
    flags = {"references": "--no-references", "measure_inference": "--no-inference-timing"}
    options = []
    for name, value in settings.items():
        if value is True:
            options.append(f"--{name.replace('_', '-')}")
        elif value is False:
            options.append(flags[name])
        else:
            options += [f"--{name.replace('_', '-')}", str(value)]
    return options


def test_a_halving_sweep_killed_with_sigkill_resumes_to_the_records_of_an_uninterrupted_one(
    halving_data, tmp_path
):
    peftbench.run(**HALVING, dataset=str(halving_data), out=tmp_path / "clean", progress=False)
    command = [sys.executable, "-m", "peftbench.cli", "run", "--dataset", str(halving_data), "--quiet"]
    command += cli_options(HALVING)

    killed = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([*command, "--out", str(killed)], stderr=stderr)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((killed / "records").glob("*.json"))) < 6:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)  # in the middle of the search: a round or so is done
    process.wait()
    before = {p.name: p.read_bytes() for p in (killed / "records").glob("*.json")}
    assert 6 <= len(before) < len(list((tmp_path / "clean" / "records").glob("*.json"))), log.read_text()
    resumed = subprocess.run([*command, "--out", str(killed)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    for name, content in before.items():  # finished runs were skipped, not redone
        assert (killed / "records" / name).read_bytes() == content

    expected = {r.run_id: r for r in read_records(tmp_path / "clean")}
    got = {r.run_id: r for r in read_records(killed)}
    assert sorted(got) == sorted(expected)  # the same runs: candidates, rounds, choice, run ids
    for run_id, record in got.items():
        assert comparable(record) == comparable(expected[run_id]), run_id
    finals = [r for r in got.values() if r.stage == "final"]
    assert {r.training["continued_from"] is not None for r in finals} == {True}  # nothing trained twice
    assert not (killed / "states").exists() and not (tmp_path / "clean" / "states").exists()


@pytest.mark.slow
def test_a_halving_sweep_with_two_runs_per_device_makes_the_same_runs_and_choice(halving_data, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_run(2))  # each worker's share: the same numbers need the same threads
    try:
        alone = peftbench.run(**HALVING, dataset=str(halving_data), out=tmp_path / "alone", progress=False)
    finally:
        torch.set_num_threads(threads)
    shared = peftbench.run(**HALVING, dataset=str(halving_data), out=tmp_path / "shared", runs_per_device=2)
    ours, theirs = ({r.run_id: r for r in board.records} for board in (shared, alone))
    assert sorted(ours) == sorted(theirs)  # the same candidates, rounds, choice and run ids
    for run_id, record in ours.items():
        assert record.tuning == theirs[run_id].tuning and record.training == theirs[run_id].training
        assert record.predictions == theirs[run_id].predictions
        assert record.metrics == pytest.approx(theirs[run_id].metrics, abs=1e-5)
