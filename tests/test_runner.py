"""One run: trained, evaluated, saved, reloaded to identical predictions, and its costs recorded."""

from __future__ import annotations

import math
import os

import pandas as pd
import pytest

import peftbench
from conftest import keyword_rows
from fake_plugins import HeadProbe, MethodsPlugin
from peftbench import hookimpl
from peftbench.models import classification_head
from peftbench.plugins import collect_methods
from peftbench.runs.runner import refuse_pickles


def test_pickled_adapters_are_refused(tmp_path):
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(
        Exception, match="holds pickle files \\(adapter_model.bin\\); peftbench loads safetensors"
    ):
        refuse_pickles(tmp_path)


@pytest.fixture(scope="module")
def lora_and_prefix(tmp_path_factory):
    """(results folder, leaderboard) of one sweep: lora, prefix tuning and the reference rows."""
    root = tmp_path_factory.mktemp("costs")
    data = root / "d.parquet"
    pd.DataFrame(keyword_rows(64, 0)).to_parquet(data)
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(data), methods="lora,prefix_tuning", out=root / "r", progress=False
    )
    return root / "r", board


def test_every_record_carries_its_costs(lora_and_prefix):
    out, board = lora_and_prefix
    record = next(r for r in board.records if r.method == "lora")
    costs = record.costs
    assert costs["train_steps"] == 6 and costs["train_seconds"] > 0  # 64 examples, 3 epochs
    assert costs["train_tokens_per_second"] > 0 and costs["train_samples_per_second"] > 0
    assert 0.5 < costs["padding_efficiency"] <= 1.0
    assert costs["peak_memory_mb"] > 50 and costs["eval_seconds"] > 0
    phases = ("prepare", "evaluate", "save", "reload", "inference")
    assert all(costs[f"{phase}_seconds"] > 0 for phase in phases)  # where the run's time went
    assert costs["evaluate_seconds"] >= costs["eval_seconds"]  # validation and test, test alone
    # How busy the machine was: the run's own threads count in the load, so it is never negative.
    assert costs["load_average_start"] >= 0 and costs["load_average_end"] >= 0
    assert 0 < costs["process_cpu_share"] <= (os.cpu_count() or 1) + 0.5
    adapter_files = (out / record.adapter_path).rglob("*")
    assert costs["adapter_bytes"] == sum(f.stat().st_size for f in adapter_files if f.is_file()) > 0
    assert record.train_config["precision"] in {"bf16", "fp32"}  # what "auto" resolved to
    markdown = board.to_markdown()
    assert "tokens/s" in markdown and "peak MB" in markdown and "adapter KB" in markdown
    assert "latency ms" in markdown and "merged latency ms" in markdown and "load ms" in markdown


TIMED = {"latency_ms", "throughput"}
MERGED = {"merged_latency_ms", "merged_throughput"}


def test_final_runs_are_timed_at_inference_merged_where_the_method_merges(lora_and_prefix):
    _, board = lora_and_prefix
    costs = {r.method: r.costs for r in board.records}
    assert set(costs["lora"]) >= TIMED | MERGED  # LoRA folds into the base weights
    for method in ("prefix_tuning", "baseline", "head_only"):  # cannot merge, or have nothing to merge
        assert set(costs[method]) >= TIMED and not MERGED & set(costs[method]), method
    assert not (TIMED | MERGED) & set(costs["majority"])  # a constant: no model to time
    for method, values in costs.items():
        assert values["adapter_load_seconds"] >= 0, method
        timed = (TIMED | MERGED) & set(values)
        assert all(math.isfinite(values[key]) and values[key] > 0 for key in timed), method
    frame = board.to_frame().set_index("method")
    assert frame.loc["lora", "merged_latency_ms"] == pytest.approx(costs["lora"]["merged_latency_ms"])
    assert frame.loc["lora", "adapter_load_seconds"] == pytest.approx(costs["lora"]["adapter_load_seconds"])
    assert pd.isna(frame.loc["prefix_tuning", "merged_latency_ms"])
    assert pd.isna(frame.loc["majority", "latency_ms"])


class NanAtEvaluation(HeadProbe):
    """Trains normally; its logits turn NaN once the model is in evaluation mode."""

    name = "nan_at_eval"
    description = "Finite loss in training, NaN logits at evaluation."

    def prepare(self, model, task, hp):
        model = super().prepare(model, task, hp)
        head = classification_head(model)
        head.register_forward_hook(
            lambda module, _, output: output if module.training else output * float("nan")
        )
        return model


class NanAtEvaluationPlugin:
    @hookimpl
    def register_methods(self, register):
        register(NanAtEvaluation())


def test_nan_logits_at_evaluation_are_a_diverged_run(keyword_dataset, tmp_path, register_plugin):
    register_plugin(NanAtEvaluationPlugin())
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_dataset), methods="nan_at_eval,lora", out=tmp_path,
        max_steps=2, references=False, progress=False,
    )  # fmt: skip
    records = {r.method: r for r in board.records}
    assert records["nan_at_eval"].status == "diverged"
    assert records["nan_at_eval"].error == (
        "the model's validation logits are not finite (NaN or infinite) (during evaluate)"
    )
    assert records["lora"].status == "complete"
    assert [r.method for r in board.incomplete_runs()] == ["nan_at_eval"]
    assert not (tmp_path / "adapters" / records["nan_at_eval"].run_id).exists()


def test_execute_run_never_raises_and_saves_only_into_the_folder_it_is_given(keyword_dataset, tmp_path):
    from peftbench.runs.context import build_context
    from peftbench.runs.executors import LocalExecutor
    from peftbench.runs.runner import execute_run
    from peftbench.runs.spec import make_spec
    from peftbench.settings import sweep_config

    config = sweep_config(
        model="tiny-gpt2", dataset=str(keyword_dataset), max_steps=1, out=tmp_path, measure_inference=False
    )
    ctx = build_context(config, LocalExecutor().start("cpu", "fp32"))
    entry = collect_methods().get("lora")
    spec = make_spec(ctx, entry, entry.method.hyperparameters(), seed=0)
    folder = tmp_path / "somewhere" / "adapter"
    record = execute_run(ctx, spec, folder)
    assert record.status == "complete" and (folder / "adapter_model.safetensors").is_file()
    assert record.costs["adapter_bytes"] == sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert record.adapter_path is None  # the store sets it when it keeps the adapter
    assert record.costs["adapter_load_seconds"] >= 0 and "latency_ms" not in record.costs  # not timed
    assert not (tmp_path / "records").exists() and not (tmp_path / "adapters").exists()
    again = execute_run(ctx, spec, folder)  # the folder exists: saving fails, the run says so
    assert (
        again.status == "failed"
        and again.error.startswith("FileExistsError")
        and "(during save)" in again.error
    )


class Reporting(HeadProbe):
    """A head probe that reports the head's norm, or something that is not a number."""

    name = "reporting"
    description = "Reports its head's weight norm after training."

    def __init__(self, numbers=None):
        self.numbers = numbers

    def report(self, model):
        if self.numbers is not None:
            return self.numbers
        return {"head_norm": classification_head(model).weight.norm(), "steps_seen": 2}


def test_a_method_reports_its_own_numbers_into_its_record(keyword_dataset, tmp_path, register_plugin):
    register_plugin(MethodsPlugin(Reporting()))
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_dataset), methods="reporting,lora", out=tmp_path,
        max_steps=2, references=False, progress=False, measure_inference=False,
    )  # fmt: skip
    records = {r.method: r for r in board.records}
    reported = records["reporting"].method_metrics
    assert set(reported) == {"head_norm", "steps_seen"} and reported["steps_seen"] == 2.0
    assert reported["head_norm"] > 0 and records["lora"].method_metrics == {}
    assert board.to_frame().set_index("method").loc["reporting", "method_metrics"] == reported


def test_a_report_that_is_not_numbers_fails_the_run_saying_so(keyword_dataset, tmp_path, register_plugin):
    register_plugin(MethodsPlugin(Reporting({"ranks": [1, 2]})))
    board = peftbench.run(
        model="tiny-gpt2", dataset=str(keyword_dataset), methods="reporting", out=tmp_path,
        max_steps=1, references=False, progress=False, measure_inference=False,
    )  # fmt: skip
    (record,) = board.records
    assert record.status == "failed"
    assert record.error == (
        "PeftbenchError: method 'reporting' reported 'ranks'=[1, 2]: report numbers by name (during evaluate)"
    )
