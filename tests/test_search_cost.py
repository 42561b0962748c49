"""What a search cost per phase, beside an exhaustive search of the same candidates, on the page."""

from __future__ import annotations

import pytest

from peftbench.docgen import build_site
from peftbench.leaderboard.search_cost import search_cost
from peftbench.records import RunRecord, write_record

TUNING = {
    "search": "halving",
    "settings": {"eta": 2, "first_share": 0.5, "tune_seeds": [0], "max_steps": 8, "extension_limit": 1},
    "score": "validation accuracy",
    "chosen": {"learning_rate": 0.003},
    "candidates": [
        {"hyperparameters": {"learning_rate": 0.001}, "status": "complete", "validation_accuracy": 0.6,
         "validation_loss": 0.7, "step": 4, "seeds": 1, "run_id": "a0", "extended": False},
        {"hyperparameters": {"learning_rate": 0.003}, "status": "complete", "validation_accuracy": 0.9,
         "validation_loss": 0.3, "step": 8, "seeds": 1, "run_id": "b1", "extended": True},
    ],
    "rounds": [{"step": 4, "candidates": 2, "seeds": 1}, {"step": 8, "candidates": 1, "seeds": 1}],
    "runs": ["a0", "b0", "b1"],
    "stops": {"learning_rate": "at limit"},
}  # fmt: skip


def run(run_id, stage, rate, start, last, costs, continued=None):
    """A record trained from step ``start`` to ``last``, with a checkpoint every 2 steps."""
    steps = range(2, last + 1, 2)
    return RunRecord(
        run_id, "complete", "tiny", "d", "lora", 0, stage=stage, hyperparameters={"learning_rate": rate},
        tuning=TUNING if stage == "final" else None,
        metrics={"validation_accuracy": 0.9, "validation_loss": 0.3, **({"accuracy": 0.9, "macro_f1": 0.9,
                 "loss": 0.3} if stage == "final" else {})},
        costs={"train_steps": last, "train_seconds": float(last), **costs},
        curves={"validation_accuracy": [[step, 0.9] for step in steps]},
        training={"kept_step": last, "last_step": last, "max_steps": 8, "stopped_early": False,
                  "until": None if last == 8 else last, "continued_from": continued, "from_step": start},
        predictions=[1, 0] if stage == "final" else [], references=[1, 0] if stage == "final" else [],
        reload={"predictions_identical": True} if stage == "final" else {},
    )  # fmt: skip


TUNE_COSTS = {"spent_train_steps": 4, "spent_train_seconds": 4.0, "spent_checkpoint_seconds": 2.0,
              "prepare_seconds": 1.0}  # fmt: skip
RECORDS = [
    run("a0", "tune", 0.001, 0, 4, TUNE_COSTS),
    run("b0", "tune", 0.003, 0, 4, TUNE_COSTS),
    run("b1", "tune", 0.003, 4, 8, TUNE_COSTS, continued="b0"),
    run("lora-seed0", "final", 0.003, 8, 8, {
        "spent_train_steps": 0, "spent_train_seconds": 0.0, "spent_checkpoint_seconds": 0.0,
        "eval_seconds": 3.0, "evaluate_seconds": 3.5, "reload_seconds": 5.0, "inference_seconds": 7.0,
        "prepare_seconds": 1.0, "save_seconds": 0.5}, continued="b1"),
]  # fmt: skip


def test_what_the_search_spent_and_what_an_exhaustive_one_would_have():
    cost = search_cost([RECORDS[-1]], RECORDS)
    assert (cost.search, cost.runs, cost.exhaustive_runs) == ("halving", 3, 2)
    assert cost.measured == {
        "training": 12.0,  # each run's own 4 steps; the final run continued and trained none
        "checkpoint evaluations": 6.0,
        "test": 3.0,
        "reload": 5.0,
        "inference timing": 7.0,
        "other": 3.0 + 1.0 + 0.5 + 0.5,  # preparing each run, saving, restoring the kept checkpoint
    }
    assert cost.exhaustive == {
        "training": 2 * 8 * 1.0,  # both candidates from the start to step 8, at 1 s a step
        "checkpoint evaluations": 2 * 4 * 1.0,  # 4 checkpoints a run, at 1 s each
        "test": 3.0,
        "reload": 5.0,
        "inference timing": 7.0,
        "other": 2 * 1.0 + 2.0,
    }


def test_a_records_page_states_the_search_its_stops_and_its_cost(tmp_path):
    for record in RECORDS:
        write_record(record, tmp_path / "records")
    build_site(tmp_path / "records", tmp_path / "docs")
    page = (tmp_path / "docs" / "leaderboard" / "tiny-d.md").read_text()
    assert (
        "successive halving (eta 2, first share 0.5), 1 tuning seed, maximum 8 steps; rounds: 2 to step 4 "
        "(1 seed), 1 to step 8 (1 seed)" in page
    )
    assert (
        "learning_rate=0.003 (beyond the search space): validation accuracy 90.00% (1 seed, step 8) (chosen)"
        in page
    )
    assert (
        "learning_rate: at the edge of the values tried when the extension limit stopped the search" in page
    )
    assert "learning_rate=0.003 (at limit)" in page  # the table's tuned column
    section = page[page.index("## Search cost") : page.index("## Per method")]
    assert '<td>lora</td><td>halving</td><td data-sort="3">3</td><td data-sort="12">12</td>' in section
    assert '<td>exhaustive (estimate)</td><td data-sort="2">2</td><td data-sort="16">16</td>' in section
    assert 'data-sort="38">38</td>' in section and 'data-sort="43">43</td>' in section  # the totals


@pytest.mark.parametrize("tuning", [None, {}])
def test_untuned_rows_have_no_search(tuning):
    record = RECORDS[-1]
    assert search_cost([RunRecord(**{**vars(record), "tuning": tuning})], RECORDS) is None


def test_a_pages_compute_total_counts_every_phase_of_every_run():
    from peftbench.docgen.facts import compute
    from peftbench.leaderboard.search_cost import phase_totals

    totals = phase_totals(RECORDS)  # three tuning runs and the final run that continued the last
    assert totals == {"training": 12.0, "checkpoint evaluations": 6.0, "test": 3.0, "reload": 5.0,
                      "inference timing": 7.0, "other": 5.0}  # fmt: skip
    shown = compute(RECORDS)
    assert shown.startswith("0.6 min in 4 runs, tuning runs included (minutes: training 0.2, ")
    assert "inference timing 0.1" in shown and "not counted" in shown
