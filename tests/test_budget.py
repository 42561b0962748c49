"""Matched parameter budgets: parsing --budget, sizing each method to it, and what records,
the sweep and the leaderboard say about it."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import peftbench
from conftest import keyword_folder
from fake_plugins import HeadProbe, MethodsPlugin
from peftbench import PeftbenchError
from peftbench.budget import Budget, fit, parse_budget
from peftbench.cli import build_parser
from peftbench.formatting import budget_text
from peftbench.methods.lora import Lora
from peftbench.plugins import collect_methods
from peftbench.settings import sweep_config

TINY = dict(model="tiny-gpt2", max_steps=1, progress=False)


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory):
    return keyword_folder(tmp_path_factory.mktemp("keywords"), train=64, validation=32, test=32)


@pytest.mark.parametrize(
    ("given", "budget"),
    [
        (70000, Budget(count=70000)),
        ("70000", Budget(count=70000)),
        ("70k", Budget(count=70000)),
        ("1.2M", Budget(count=1_200_000)),
        ("1_000", Budget(count=1000)),
        ("0.3%", Budget(percent=0.3)),
        ("100%", Budget(percent=100.0)),
        (2e5, Budget(count=200000)),
    ],
)
def test_budgets_are_counts_with_suffixes_or_percentages(given, budget):
    assert sweep_config(budget=given).budget == budget
    assert sweep_config().budget is None


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("abc", "budget 'abc' is not a parameter count or a percentage: write e.g. --budget 70000, 70k"),
        ("0", "budget '0' must be above 0"),
        (0, "budget 0 must be above 0"),
        ("-5%", "budget '-5%' must be above 0"),
        ("150%", "budget '150%' is more than the whole model: use a percentage up to 100%"),
        ("1.5", "budget '1.5' is not a whole number of parameters"),
        (True, "budget True is not a parameter count or a percentage"),
    ],
)
def test_bad_budgets_are_refused_in_one_line(given, words):
    with pytest.raises(PeftbenchError) as caught:
        sweep_config(budget=given)
    assert str(caught.value).startswith(words) and "\n" not in str(caught.value)


def test_the_budget_comes_from_the_setting_to_the_cli_and_run():
    args = build_parser().parse_args(["run", "--budget", "0.3%"])
    assert parse_budget(args.budget) == Budget(percent=0.3)
    assert "budget" in peftbench.run.__signature__.parameters
    assert Budget(percent=0.3).target(22_713_986) == 68_142 and str(Budget(count=70000)) == "70,000"


def affine(value: int) -> int:
    return 100 + 37 * value


@pytest.mark.parametrize("count", [affine, lambda v: 5 * v * v + 3, lambda v: 64 * (v // 3)])
@pytest.mark.parametrize("target", [1, 150, 1000, 4321, 99_999])
@pytest.mark.parametrize("default", [1, 8, 500])
def test_fit_finds_the_value_whose_count_is_closest(count, target, default):
    calls = []
    found = fit(lambda v: calls.append(v) or count(v), target, default, 1, 2000)
    best = min(range(1, 2001), key=lambda v: (abs(count(v) - target), v))
    assert abs(found.achieved - target) == abs(count(best) - target)
    assert found.achieved == count(found.value) and 1 <= found.value <= 2000
    assert len(set(calls)) <= 32  # a few counts, not a scan


def test_fit_stays_where_the_method_accepts_values_and_within_bounds():
    accepted = lambda v: affine(v) if v > 8 else None  # noqa: E731 - a rule refuses 8 and below
    assert fit(accepted, affine(3), default=12, low=1).value == 9  # the nearest it allows
    assert fit(accepted, affine(40), default=12, low=1).value == 40
    assert fit(affine, 10**9, default=8, low=1, high=64).value == 64
    assert fit(lambda v: 500, 50, default=8, low=1).value == 1  # a key that does not move the count
    assert fit(lambda v: 500, 5000, default=8, low=1, high=math.inf).achieved == 500


@pytest.mark.parametrize("target", [affine(12), affine(30), affine(96), affine(12) + 60])
def test_fit_steps_over_refused_values_between_accepted_ones(target):
    """HRA takes even ranks only, OFT block sizes that divide the layers: a gap is no wall."""
    even = lambda v: affine(v) if v % 2 == 0 else None  # noqa: E731
    best = min(range(2, 2001, 2), key=lambda v: (abs(affine(v) - target), v))
    assert fit(even, target, default=8, low=1, high=2000).value == best
    divides = lambda v: affine(v) if 384 % v == 0 else None  # noqa: E731
    best = min((v for v in range(1, 385) if 384 % v == 0), key=lambda v: (abs(affine(v) - target), v))
    assert fit(divides, target, default=32, low=1, high=384).value == best


def test_lora_and_prefix_tuning_are_sized_within_ten_percent_and_ia3_runs_off_budget(
    keyword_data, tmp_path, capsys
):
    board = peftbench.run(
        **{**TINY, "progress": True}, dataset=str(keyword_data), methods="lora,prefix_tuning,ia3",
        budget="3k", out=tmp_path,
    )  # fmt: skip
    records = {record.method: record for record in board.records}
    assert all(record.status == "complete" for record in records.values())
    for name, key in (("lora", "r"), ("prefix_tuning", "num_virtual_tokens")):
        budget = records[name].budget
        assert budget["target"] == 3000 and budget["key"] == key and budget["within"] is True
        assert records[name].hyperparameters[key] == budget["value"]
        assert records[name].costs["trainable_params"] == budget["achieved"]
        assert abs(budget["achieved"] - 3000) <= 300
    ia3 = records["ia3"].budget
    assert ia3["key"] is None and ia3["within"] is False
    assert ia3["achieved"] == records["ia3"].costs["trainable_params"]
    for reference in ("baseline", "majority", "head_only"):
        assert records[reference].budget is None
    err = capsys.readouterr().err
    lora = records["lora"].budget
    assert "  budget 3,000: 3,000 trainable parameters (the model has " in err
    assert f"  lora: r={lora['value']}, {lora['achieved']:,} trainable parameters\n" in err
    assert (
        f"  ia3: {ia3['achieved']:,} trainable parameters: OFF BUDGET (no size key, runs at its own size"
        in err
    )
    frame = board.to_frame().set_index("method")
    assert frame.loc["ia3", "budget"] == f"off budget: {ia3['achieved'] / 1000:.1f}K of 3.0K"
    assert frame.loc["lora", "budget"] == budget_text(lora) == f"{lora['achieved'] / 1000:.1f}K of 3.0K"
    assert pd.isna(frame.loc["baseline", "budget"]) or frame.loc["baseline", "budget"] == ""
    assert "| budget" in board.to_markdown() and "off budget: " in board.to_markdown()


def test_a_percentage_budget_is_of_the_base_models_parameters(keyword_data, tmp_path):
    peftbench.run(
        **TINY, dataset=str(keyword_data), methods="lora", budget="0.1%", out=tmp_path, references=False
    )
    (record,) = peftbench.read_records(tmp_path)
    total = record.costs["total_params"] - record.costs["trainable_params"]  # the base model's
    assert record.budget["asked"] == "0.1%" and record.budget["target"] == round(total / 1000)
    assert record.budget["within"] and record.costs["trainable_params"] == record.budget["achieved"]
    # The same run under the same budget is complete already: skipped, its record unchanged.
    again = peftbench.run(
        **TINY, dataset=str(keyword_data), methods="lora", budget="0.1%", out=tmp_path, references=False
    )
    assert [r.budget for r in again.records] == [record.budget]


class GridLora(Lora):
    name = "grid_lora"
    search_space = {"learning_rate": [1e-2], "r": [2, 4]}


def test_under_tune_the_size_is_fixed_and_every_seed_gets_it(keyword_data, tmp_path, register_plugin):
    register_plugin(MethodsPlugin(GridLora()))
    board = peftbench.run(
        **TINY, dataset=str(keyword_data), methods="grid_lora", budget=3000, tune=True, seeds=[0, 1],
        references=False, out=tmp_path,
    )  # fmt: skip
    tuned = [r for r in board.records if r.stage == "tune"]
    finals = [r for r in board.records if r.stage == "final"]
    assert len(finals) == 2 and all(r.status == "complete" for r in board.records)
    assert sorted(r.seed for r in tuned) == [0, 1, 2]  # its one candidate, on each tuning seed
    size = finals[0].budget["value"]
    assert size not in (2, 4) and finals[0].budget["within"]  # the budget's r, not the grid's
    assert {r.hyperparameters["r"] for r in board.records} == {size}
    assert finals[0].budget == finals[1].budget and {r.seed for r in finals} == {0, 1}
    for record in finals:
        assert set(record.tuning["chosen"]) == {"learning_rate"}
        assert all(set(c["hyperparameters"]) == {"learning_rate"} for c in record.tuning["candidates"])


def test_a_size_key_given_with_the_budget_is_a_conflict(keyword_data, tmp_path):
    with pytest.raises(PeftbenchError) as caught:
        peftbench.run(**TINY, dataset=str(keyword_data), budget="3k", hp={"lora": {"r": 4}}, out=tmp_path)
    assert str(caught.value) == "--budget sizes lora by r, and --hp lora.r fixes it too: drop one of them"
    assert not (tmp_path / "records").exists()
    # Reference rows are not sized: their hyper-parameters stay free.
    sweep_config(budget="3k", hp={"head_only": {"learning_rate": 1e-2}})


class NoSuchKey(HeadProbe):
    name = "no_such_key"
    size_key = "width"


class FloatKey(HeadProbe):
    name = "float_key"
    size_key = "learning_rate"


@pytest.mark.parametrize("method", [NoSuchKey(), FloatKey()])
def test_a_size_key_that_is_not_a_whole_number_hyperparameter_is_refused(register_plugin, method):
    register_plugin(MethodsPlugin(method))
    with pytest.raises(
        PeftbenchError, match=f"its size_key '{method.size_key}' is not one of its whole-number"
    ):
        collect_methods()


def test_builtin_methods_declare_what_scales_their_size():
    registry = collect_methods()
    assert registry.get("lora").method.size_key == "r"
    assert registry.get("prefix_tuning").method.size_key == "num_virtual_tokens"
    assert registry.get("ia3").method.size_key is None
    assert all(registry.get(name).method.size_key is None for name in ("baseline", "head_only"))
