"""What changed since a previous protocol: the same table from an earlier results folder, per method."""

from __future__ import annotations

import dataclasses
import math

import pytest

from conftest import record
from peftbench.cli import main
from peftbench.docgen import build_site
from peftbench.leaderboard import Leaderboard
from peftbench.leaderboard.changes import changes
from peftbench.records import write_record


def runs(version: str, scores: dict[str, list[float]], chosen: dict[str, dict] | None = None) -> list:
    """Final records of table (m, d) written by peftbench ``version``: a method per key, a seed per score."""
    made = []
    for method, values in scores.items():
        for seed, score in enumerate(values):
            tuning = {"chosen": chosen[method], "candidates": []} if chosen and method in chosen else None
            item = record(
                method, seed, score, tuning=tuning, environment={"packages": {"peftbench": version}}
            )
            item.run_id = f"{version}-{method}-{seed}"
            item.metrics["validation_accuracy"] = score
            made.append(item)
    return made


BEFORE = runs(
    "0.3.0", {"lora": [0.80, 0.80, 0.80], "prefix_tuning": [0.60, 0.62]}, {"lora": {"learning_rate": 1e-3}}
)
NOW = runs("0.4.0", {"lora": [0.85, 0.86, 0.87], "ia3": [0.70]}, {"lora": {"learning_rate": 3e-3}})


def test_each_method_is_compared_with_its_row_in_the_previous_table():
    table = changes(Leaderboard(NOW), Leaderboard(BEFORE)).set_index("method")
    assert list(table.index) == ["lora", "ia3", "prefix_tuning"]  # today's rank order, then the rest
    lora = table.loc["lora"]
    assert (lora["version_before"], lora["version_now"]) == ("0.3.0", "0.4.0")
    assert (lora["score_before"], lora["score_now"]) == pytest.approx((0.80, 0.86))
    assert lora["change"] == pytest.approx(0.06)
    assert lora["ci95_before"] == pytest.approx(0.0, abs=1e-12) and lora["ci95_now"] > 0
    assert (lora["tuned_before"], lora["tuned_now"]) == ("learning_rate=0.001", "learning_rate=0.003")
    assert lora["flags_now"] == ""
    assert table.loc["ia3"].isna()[["score_before", "change", "version_before"]].all()
    assert math.isclose(table.loc["prefix_tuning", "score_before"], 0.61)
    assert table.loc["prefix_tuning"].isna()[["score_now", "flags_now", "version_now"]].all()


def test_a_table_the_previous_folder_lacks_has_no_changes_and_its_page_says_so(tmp_path):
    other = [dataclasses.replace(item, dataset="elsewhere") for item in BEFORE]
    assert changes(Leaderboard(NOW), Leaderboard(other)).empty
    for folder, made in (("now", NOW), ("before", other)):
        for item in made:
            write_record(item, tmp_path / folder)
    build_site(tmp_path / "now", tmp_path / "site", previous_dir=tmp_path / "before")
    page = (tmp_path / "site" / "leaderboard" / "m-d.md").read_text()
    section = page[page.index("## What changed") : page.index("## Per method")]
    assert "First published under this protocol" in section and "<table" not in section


def test_the_page_gains_a_what_changed_section_only_with_a_previous_folder(tmp_path, capsys):
    for folder, made in (("now", NOW), ("before", BEFORE)):
        for item in made:
            write_record(item, tmp_path / folder)
    build_site(tmp_path / "now", tmp_path / "plain")
    assert "What changed" not in (tmp_path / "plain" / "leaderboard" / "m-d.md").read_text()
    assert main(["docs", "--records", str(tmp_path / "now"), "--site", str(tmp_path / "site"),
                 "--previous", str(tmp_path / "before")]) == 0  # fmt: skip
    page = (tmp_path / "site" / "leaderboard" / "m-d.md").read_text()
    section = page[page.index("## What changed") : page.index("## Per method")]
    assert "accuracy % before (0.3.0)" in section and "accuracy % now (0.4.0)" in section
    assert '<td data-sort="0.06">+6.00</td>' in section
    assert "learning_rate=0.001" in section and "learning_rate=0.003" in section
    assert section.count("<td>not run</td>") == 2  # ia3 before, prefix_tuning now
