"""Honest timings: each record keeps how busy the machine was while its run went on, and which
machine it was; the leaderboard marks the timings of rows measured under other load instead of
mixing them in, and says which machine ran each row."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import torch

from peftbench.docgen.facts import setup_rows
from peftbench.docgen.leaderboard_pages import split_tables, table_page
from peftbench.environment import MachineLoad, describe_environment
from peftbench.leaderboard import Leaderboard, diagnostics
from peftbench.records import RunRecord


def test_the_cpu_another_process_uses_during_a_run_is_measured():
    load = MachineLoad()
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"]
    )
    spinner.wait()  # this process sleeps meanwhile: the spinner is the other load
    costs = load.costs()
    assert costs["other_cpu_share"] > 0.7  # about one core's worth for the whole window
    assert costs["process_cpu_share"] < 0.2
    assert {"load_average_start", "load_average_end"} <= set(costs)


def record(method: str, seed: int, other: float | None, machine: str | None = None) -> RunRecord:
    costs = {
        "train_seconds": 100.0 + seed,
        "train_samples_per_second": 50.0,
        "latency_ms": 4.0,
        "throughput": 900.0,
    }
    if other is not None:
        costs.update(
            other_cpu_share=other, process_cpu_share=1.9, load_average_start=2.0, load_average_end=2.5
        )
    return RunRecord(
        run_id=f"{method}-seed{seed}", status="complete", model="m", dataset="d", method=method, seed=seed,
        metrics={"accuracy": 0.8, "validation_accuracy": 0.8, "loss": 0.4}, costs=costs,
        predictions=[0, 1, 1, 0], references=[0, 1, 1, 1], reload={"predictions_identical": True},
        started_at="2026-12-03T10:00:00+00:00", finished_at=f"2026-12-03T10:0{seed}:00+00:00",
        environment={"device": "cpu", "cpu_model": "AMD EPYC", "cpu_count": 2, "torch_threads": 2,
                     **({"machine": machine, "cpu_capability": "AVX512" if machine == "aaaa0000" else "AVX2",
                         "cpu_bf16": machine == "aaaa0000"} if machine else {})},
    )  # fmt: skip


def board() -> Leaderboard:
    records = [record("lora", 0, 0.05), record("lora", 1, 0.9)]  # the second seed shared the machine
    records += [record("ia3", 0, 0.1), record("ia3", 1, 0.2)]
    records += [record("vera", 0, None), record("vera", 1, None)]  # records before 0.4: not measured
    return Leaderboard(records)


def test_timings_of_a_row_measured_under_other_load_are_marked_and_the_rest_are_not():
    frame = board().to_frame().set_index("method")
    assert frame.loc["lora", "other_load"] == 0.9 and frame.loc["lora", "timed_under_load"]
    assert frame.loc["ia3", "other_load"] == 0.2 and not frame.loc["ia3", "timed_under_load"]
    assert pd.isna(frame.loc["vera", "timed_under_load"])  # not measured (before 0.4): not judged
    rows = {
        line.split("|")[2].strip(): line
        for line in board().to_markdown().splitlines()
        if line.startswith("| ")
    }
    assert "100.5 †" in rows["lora"] and "4.00 †" in rows["lora"] and "900 †" in rows["lora"]
    assert "0.90" in rows["lora"]  # the other load itself, in cores
    assert "†" not in rows["ia3"] and "†" not in rows["vera"]
    assert diagnostics.LOAD_LEGEND in board().to_markdown()


def test_the_page_marks_each_seed_measured_under_load():
    (table,) = split_tables(board())
    page = table_page(table, known_methods=set())
    assert ">0.90 †</td>" in page and ">0.05</td>" in page and ">0.20</td>" in page


def test_a_record_names_its_machine_and_what_decides_its_cpu_speed():
    first, again = describe_environment(torch.device("cpu")), describe_environment(torch.device("cpu"))
    assert re.fullmatch(r"[0-9a-f]{8}", first["machine"]) and first["machine"] == again["machine"]
    assert first["cpu_capability"] == torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", ...
    assert isinstance(first["cpu_bf16"], bool)


def machines_board() -> Leaderboard:
    """lora ran on two machines (a sweep resumed elsewhere), ia3 on one, vera before machines were named."""
    records = [record("lora", 0, 0.0, "aaaa0000"), record("lora", 1, 0.0, "bbbb1111")]
    records += [record("ia3", 0, 0.0, "aaaa0000"), record("ia3", 1, 0.0, "aaaa0000")]
    return Leaderboard([*records, record("vera", 0, None), record("vera", 1, None)])


def test_each_row_says_which_machines_ran_its_seeds_and_the_page_describes_them():
    frame = machines_board().to_frame().set_index("method")
    assert frame.loc["lora", "machine"] == "aaaa0000, bbbb1111" and frame.loc["ia3", "machine"] == "aaaa0000"
    assert pd.isna(frame.loc["vera", "machine"])
    (table,) = split_tables(machines_board())
    page = table_page(table, known_methods=set())
    assert ">aaaa0000, bbbb1111</td>" in page and ">bbbb1111</td>" in page  # the row, and its seed
    hardware = dict(setup_rows(table.final, table.final))["Hardware"]
    assert "CPU AMD EPYC (2 cores, 2 torch threads, AVX512, native bf16; machine aaaa0000)" in hardware
    assert "CPU AMD EPYC (2 cores, 2 torch threads, AVX2, no native bf16; machine bbbb1111)" in hardware


def test_records_that_name_no_machine_show_no_machine_column():
    assert re.search(r"\|\s*machine\s*\|", machines_board().to_markdown())  # the check below can fail
    (table,) = split_tables(board())
    page = table_page(table, known_methods=set())
    assert ">machine<" not in page and not re.search(r"\|\s*machine\s*\|", board().to_markdown())
