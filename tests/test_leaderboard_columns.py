"""The column table: every leaderboard column declared once, from which the frame, the terminal
table (the deciding columns by default, fitted to the width; every column on request), the CSV
and the site derive; headers name each table's metric, and lower-is-better metrics rank that way."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from conftest import record
from peftbench.cli import main
from peftbench.errors import PeftbenchError
from peftbench.leaderboard import Leaderboard
from peftbench.leaderboard.columns import ALL, COLUMNS, DEFAULT, INDEX, SITE, header, table_columns
from peftbench.leaderboard.report import table_texts
from peftbench.records import write_record
from peftbench.tasks.metrics import ACCURACY, MACRO_F1

DECIDING = ["rank", "method", "seeds", "accuracy % (95% CI)", "★", "Δ vs baseline (p)", "trainable params",
            "train s", "latency ms"]  # fmt: skip


def board() -> Leaderboard:
    runs = []
    for seed in range(2):
        runs.append(record("baseline", seed, 0.5, role="baseline"))
        runs.append(record("a_very_long_method_name_that_takes_room", seed, 0.8 + seed / 100))
    for made in runs:
        made.costs.update(latency_ms=5.0, peak_memory_mb=100.0)
    return Leaderboard(runs)


def test_the_default_view_shows_the_deciding_columns_and_all_shows_every_declared_one():
    frame = board().to_frame()
    assert list(table_texts(frame, DEFAULT).columns) == DECIDING
    every = list(table_texts(frame, ALL).columns)
    shown = [c for c in table_columns(ALL, [MACRO_F1]) if c.header]
    optional = {header(c, ACCURACY) for c in shown if c.optional} - {"macro-F1 %"}  # all empty here
    assert every == [header(c, ACCURACY) for c in shown if header(c, ACCURACY) not in optional]
    assert {"budget", "MFU %", "flags", "features s"} <= optional
    assert len(every) > 2 * len(DECIDING) and "macro-F1 %" in every and "peak MB" in every


def test_the_default_view_narrows_to_the_width_and_says_what_it_left_out():
    wide = board().to_markdown(DEFAULT)
    width = max(len(line) for line in wide.splitlines() if line.startswith("|"))
    narrow = board().to_markdown(DEFAULT, width=width - 10)
    lines = [line for line in narrow.splitlines() if line.startswith("|")]
    assert max(len(line) for line in lines) <= width - 10 and "latency ms" not in lines[0]
    assert f"(left out to fit {width - 10} characters: latency ms; --columns all shows them)" in narrow
    tiny = board().to_markdown(DEFAULT, width=20)  # the method and its score are never dropped
    heading = next(line for line in tiny.splitlines() if line.startswith("| method"))
    assert "accuracy % (95% CI)" in heading and "trainable params" not in heading


def test_columns_can_be_named_and_an_unknown_one_is_one_line_listing_them(tmp_path, capsys):
    texts = table_texts(board().to_frame(), ["score", "peak_memory_mb"])
    assert list(texts.columns) == ["method", "accuracy % (95% CI)", "peak MB"]
    with pytest.raises(
        PeftbenchError, match="unknown column 'speed'; known columns: rank, method, seeds, score"
    ):
        table_texts(board().to_frame(), ["speed"])
    for made in board().records:
        write_record(made, tmp_path)
    assert main(["leaderboard", str(tmp_path), "--columns", "score,macro_f1"]) == 0
    out = capsys.readouterr().out
    assert "| method" in out and "| macro-F1 %" in out and "trainable params" not in out
    assert main(["leaderboard", str(tmp_path), "--columns", "speed"]) == 2
    assert capsys.readouterr().err.startswith("peftbench: error: unknown column 'speed'")


def test_every_view_derives_from_the_one_declaration():
    assert len({c.name for c in COLUMNS}) == len(COLUMNS)
    site = [c.name for c in table_columns(SITE, [])]
    index = [c.name for c in table_columns(INDEX, [])]
    deciding, every = ({c.name for c in table_columns(view, [])} for view in (DEFAULT, ALL))
    assert set(index) <= set(site) and deciding <= every and "role" in set(site) - every
    frame = board().to_frame()
    for column in COLUMNS:
        if column.source:  # a column read from records is a column of the frame (and so of the CSV)
            assert column.name in frame.columns, column.name
    csv = pd.read_csv(io.StringIO(board().to_csv()))
    assert list(csv.columns) == list(frame.columns)
    assert {"score", "score_ci95", "metric", "higher_is_better", "accuracy", "macro_f1"} <= set(csv.columns)


def mse_run(method: str, seed: int, error: float, role: str = "method"):
    made = record(method, seed, 0.0, role=role)
    made.task, made.metric, made.higher_is_better = "regression", "mse", False
    made.metrics = {"mse": error, "spearman": 1 - error, "loss": error}
    made.references = [0.0, 0.5, 1.0, 0.5] * 5
    made.predictions = [r + error**0.5 * (1 if i % 2 else -1) for i, r in enumerate(made.references)]
    return made


def test_a_lower_is_better_metric_ranks_and_compares_that_way_and_names_itself():
    runs = [mse_run("baseline", s, 0.4, role="baseline") for s in range(2)]
    runs += [mse_run("lora", s, 0.05) for s in range(2)] + [mse_run("ia3", s, 0.2) for s in range(2)]
    frame = Leaderboard(runs).to_frame().set_index("method")
    assert frame["rank"].to_dict() == {"lora": 1, "ia3": 2, "baseline": 3}
    assert frame.loc["lora", "delta_vs_best"] == 0 and frame.loc["ia3", "delta_vs_best"] == pytest.approx(
        0.15
    )
    assert (
        frame.loc["lora", "delta_vs_baseline"] == pytest.approx(-0.35) and frame.loc["lora", "tied_for_best"]
    )
    texts = table_texts(Leaderboard(runs).to_frame(), DEFAULT)
    assert "MSE (95% CI)" in texts.columns and texts["Δ vs baseline (p)"].iloc[0].startswith("-0.3500")
    assert "MSE (lower is better): mean over seeds" in Leaderboard(runs).to_markdown()
