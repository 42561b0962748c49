"""The published leaderboard (leaderboard/records) holds what its protocol promises: every page run by
one version in full precision, tuned rows that did not stop at the extension limit, PEFT rows whose
interval is within 3 points unless flagged unstable, and timings taken on an otherwise idle machine."""

from __future__ import annotations

import pytest

from conftest import ROOT
from peftbench.leaderboard import Leaderboard
from peftbench.records import read_records
from peftbench.runs.search.extension import AT_LIMIT

PUBLISHED = ROOT / "leaderboard" / "records"
#: dataset -> the seeds of each of its rows (``make publish``).
SEEDS = {"emotion": 5, "glue/rte": 10, "rotten_tomatoes": 5, "stsb": 5}
#: A PEFT row's 95% interval half-width, in the metric's units (3 points of a 0-1 metric).
HALF_WIDTH = 0.03


@pytest.fixture(scope="module")
def published():
    records = read_records(PUBLISHED)
    frame = Leaderboard(records).to_frame()
    return records, frame[frame["train_examples"].isna()]  # a training subset is the gallery's page


def test_every_page_is_one_version_in_full_precision(published):
    records, frame = published
    assert set(frame["dataset"]) == set(SEEDS) and set(frame["model"]) == {"minilm"}
    assert {record.environment["packages"]["peftbench"] for record in records} == {"0.4.0"}
    assert {record.train_config["precision"] for record in records} == {"fp32"}
    assert {record.status for record in records} == {"complete"}


def test_every_row_has_its_seeds_and_no_search_stopped_at_the_extension_limit(published):
    _, frame = published
    for row in frame.itertuples():
        assert row.seeds == SEEDS[row.dataset], (row.dataset, row.label)
        assert f"({AT_LIMIT})" not in str(row.tuned), (row.dataset, row.label, row.tuned)
    tuned = frame[frame["tuned"].fillna("") != ""]
    assert set(tuned["method"]) == {"lora", "ia3", "prefix_tuning", "full_finetune", "head_only"}
    assert len(tuned) == 5 * len(SEEDS)  # one configuration per method and page: its search's choice


def test_a_peft_row_is_within_three_points_or_flagged_unstable(published):
    _, frame = published
    peft = frame[frame["role"] == "method"]  # full fine-tuning is a reference row
    loose = peft[peft["score_ci95"] > HALF_WIDTH]
    assert loose["unstable"].fillna(False).all(), loose[["dataset", "method", "score_ci95"]]
    assert {(row.dataset, row.method) for row in loose.itertuples()} == {("stsb", "prefix_tuning")}


def test_no_published_timing_was_taken_under_other_load(published):
    _, frame = published
    assert not frame["timed_under_load"].fillna(False).any()
