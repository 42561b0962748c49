"""The published leaderboard (leaderboard/records) holds what its protocol promises: every page run by
one version in full precision, tuned rows that did not stop at the extension limit, PEFT rows whose
interval is within 3 points unless flagged unstable, and timings taken on an otherwise idle machine;
and a gallery of every method that supports the model, on a fixed training subset."""

from __future__ import annotations

import pytest

from conftest import ROOT
from peftbench.leaderboard import Leaderboard
from peftbench.plugins import collect_methods
from peftbench.records import read_records
from peftbench.runs.search.extension import AT_LIMIT

PUBLISHED = ROOT / "leaderboard" / "records"
#: dataset -> the seeds of each of its rows (``make publish``).
SEEDS = {"emotion": 5, "glue/rte": 10, "rotten_tomatoes": 5, "stsb": 5}
#: A PEFT row's 95% interval half-width, in the metric's units (3 points of a 0-1 metric).
HALF_WIDTH = 0.03
#: The gallery's page: every method on this many rotten_tomatoes training examples, this many seeds.
GALLERY_EXAMPLES, GALLERY_SEEDS = 2000, 3
#: MiniLM's model family (``peftbench.methods.support.FAMILIES``): the methods that refuse it sit out.
GALLERY_FAMILY = "bert"


@pytest.fixture(scope="module")
def everything():
    records = read_records(PUBLISHED)
    return records, Leaderboard(records).to_frame()


@pytest.fixture(scope="module")
def published(everything):
    records, frame = everything
    return records, frame[frame["train_examples"].isna()]  # a training subset is the gallery's page


@pytest.fixture(scope="module")
def gallery(everything):
    _, frame = everything
    return frame[frame["train_examples"].notna()]


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


def test_no_published_timing_was_taken_under_other_load(everything):
    _, frame = everything  # the four pages and the gallery
    assert not frame["timed_under_load"].fillna(False).any()


def test_the_gallery_has_every_method_that_supports_the_model_tuned_on_its_seeds(gallery):
    assert set(gallery["dataset"]) == {f"rotten_tomatoes[train={GALLERY_EXAMPLES}]"}
    assert set(gallery["model"]) == {"minilm"}
    assert set(gallery["train_examples"]) == {GALLERY_EXAMPLES}
    entries = collect_methods().entries()
    supported = {
        e.method.name
        for e in entries
        if e.method.role == "method" and GALLERY_FAMILY not in e.method.unsupported
    }
    assert set(gallery.loc[gallery["role"] == "method", "method"]) == supported
    assert {"baseline", "majority", "head_only", "full_finetune"} <= set(gallery["method"])
    assert (gallery["seeds"] == GALLERY_SEEDS).all(), gallery.loc[gallery["seeds"] != GALLERY_SEEDS, "label"]
    trained = gallery[gallery["trainable_params"] > 0]
    assert (trained["tuned"].fillna("") != "").all(), trained.loc[trained["tuned"].fillna("") == "", "label"]
    for row in gallery.itertuples():
        assert f"({AT_LIMIT})" not in str(row.tuned), (row.label, row.tuned)
    assert len(gallery) == len(set(gallery["method"]))  # one configuration per method: its search's choice
