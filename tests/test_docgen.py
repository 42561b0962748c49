"""The site generator: deterministic pages and plots from records, Pareto frontier, escaping."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, registered
from fake_plugins import HeadProbe, probe
from peftbench import hookimpl
from peftbench.cli import main
from peftbench.docgen import build_site, method_pages
from peftbench.docgen.markup import method_slug
from peftbench.docgen.plots import pareto_front
from peftbench.formatting import escape
from peftbench.plugins import (
    MethodRegistry,
    RegisteredMethod,
)
from peftbench.records import RunRecord, write_record

ENVIRONMENT = {
    "device": "cpu",
    "device_name": "x86_64",
    "cpu_model": "Test CPU 9000",
    "cpu_count": 2,
    "torch_threads": 2,
    "python": "3.11.7",
    "platform": "Linux-test",
    "packages": {"peftbench": "0.1.0", "torch": "2.13.0+cpu", "transformers": "5.23.0"},
}


MERGES = {"lora", "ia3"}


def synthetic(dataset, method, seed, correct, *, role="method", status="complete", params=1000, day="26"):
    """A record as a sweep writes it, without training: ``correct`` of 100 test examples right.
    Timed at inference like a sweep's, except bitfit: a record from before that was measured."""
    references = [i % 2 for i in range(100)]
    timed = (
        {}
        if method == "bitfit"
        else {"adapter_load_seconds": 0.01, "latency_ms": 5 + params / 1000, "throughput": 900 - params / 10}
    )
    if method in MERGES:
        timed.update(merged_latency_ms=4.0, merged_throughput=1000.0)
    predictions = [label if i < correct else 1 - label for i, label in enumerate(references)]
    done = status == "complete"
    return RunRecord(
        run_id=f"{method}-seed{seed}-{dataset}",
        status=status,
        model="tiny",
        dataset=dataset,
        method=method,
        seed=seed,
        role=role,
        label_names=["neg", "pos"],
        hyperparameters={"learning_rate": 0.001} if role != "baseline" else {},
        train_config={"epochs": 1.0, "batch_size": 32, "max_length": 128, "precision": "bf16"},
        metrics={"accuracy": correct / 100, "macro_f1": correct / 100, "loss": 0.5} if done else {},
        costs={"trainable_params": params, "total_params": 10**6, "trainable_percent": params / 10**4,
               "train_seconds": params / 100, "peak_memory_mb": 500 + params / 10,
               "adapter_bytes": params * 4, **timed},
        reload={"predictions_identical": True} if done else {},
        predictions=predictions if done else [],
        references=references if done else [],
        environment=ENVIRONMENT,
        started_at=f"2026-11-{day}T10:00:00+00:00",
        finished_at=f"2026-11-{day}T10:05:00+00:00",
        tuning={"chosen": {"learning_rate": 0.001}, "candidates": [
            {"hyperparameters": {"learning_rate": 0.001}, "status": "complete", "validation_accuracy": 0.8},
            {"hyperparameters": {"learning_rate": 0.003}, "status": "complete", "validation_accuracy": 0.7},
        ]} if role == "method" else None,
        error=None if done else "boom in forward",
        method_metrics={"final_rank_mean": 4.0 + seed, "final_rank_min": 2} if method == "lora" else {},
    )  # fmt: skip


def sweep(folder: Path) -> Path:
    """Two (model, dataset) tables: reference rows, three-seed methods, a one-seed method, a failure."""
    for dataset in ("alpha", "beta"):
        out = folder / f"tiny-{dataset}"
        for seed in range(3):
            write_record(synthetic(dataset, "baseline", seed, 50, role="baseline", params=0), out)
            write_record(synthetic(dataset, "lora", seed, 80 + seed, params=4000, day="27"), out)
            write_record(synthetic(dataset, "ia3", seed, 70 + seed, params=800), out)
        write_record(synthetic(dataset, "bitfit", 0, 75, params=2000), out)
        write_record(synthetic(dataset, "prefix_tuning", 0, 0, status="failed"), out)
    return folder


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    records = sweep(root / "records")
    return records, root / "docs", build_site(records, root / "docs")


def test_pareto_front_on_a_hand_made_example():
    costs = [1, 2, 3, 4, 2, 5, 0.5]
    accuracies = [0.5, 0.7, 0.6, 0.9, 0.7, 0.9, 0.4]
    # (3, .6) is beaten by (2, .7); (5, .9) by (4, .9); the two identical (2, .7) do not beat each other.
    assert pareto_front(costs, accuracies) == [6, 0, 1, 4, 3]
    assert pareto_front([], []) == []
    assert pareto_front([10.0], [0.1]) == [0]


def test_generation_is_deterministic_byte_for_byte(generated, tmp_path):
    records, docs, first = generated
    again = build_site(records, tmp_path / "docs")
    assert first.pages == again.pages and first.plots == again.plots
    for relative in first.pages + first.plots:
        assert (docs / relative).read_bytes() == (tmp_path / "docs" / relative).read_bytes(), relative
    assert again.removed == [] and build_site(records, tmp_path / "docs").removed == []


def test_every_method_of_the_records_is_in_its_table_with_per_seed_values_and_setup(generated):
    _, docs, built = generated
    assert {"leaderboard/index.md", "leaderboard/tiny-alpha.md", "leaderboard/tiny-beta.md"} <= {*built.pages}
    page = (docs / "leaderboard" / "tiny-alpha.md").read_text()
    results = page.split("## Results", 1)[1].split("## Accuracy and cost", 1)[0]
    for method in ("baseline", "lora", "ia3", "bitfit", "prefix_tuning"):
        assert f'<a href="#m-{method}">{method}</a>' in results
        assert f"{{#m-{method}}}" in page  # its per-method section
    assert "<td>failed</td>" in results and "0 (1 failed)" in results and "boom in forward" in page
    assert "81.00 ± 2.48" in results  # lora: 80, 81, 82 -> t(0.975, 2) * 1 / sqrt(3) = 2.48
    assert "seed 0: 80.00, seed 1: 81.00, seed 2: 82.00" in page
    assert "learning_rate=0.001: validation accuracy 80.00% (chosen)" in page
    facts = ("Test CPU 9000 (2 cores, 2 torch threads)", "torch 2.13.0+cpu", "transformers 5.23.0",
             "runs finished 2026-11-26 to 2026-11-27", "2 classes: neg, pos", "seeds 0, 1, 2",
             "written by peftbench 0.1.0, in which what a method adds")  # fmt: skip
    for fact in facts:
        assert fact in page, fact
    index = (docs / "leaderboard" / "index.md").read_text()
    assert "[Full table, plots and per-seed values](tiny-beta.md)" in index


def test_a_model_on_two_datasets_gets_the_page_across_them_linked_from_the_index(generated):
    _, docs, built = generated
    assert "leaderboard/aggregate.md" in built.pages
    page = (docs / "leaderboard" / "aggregate.md").read_text()
    assert page.startswith("# Across datasets\n") and "## tiny over alpha, beta" in page
    # the same ranks on alpha and beta: lora 81, bitfit 75, ia3 71, baseline 50; no full_finetune
    for rank, method in enumerate(("lora", "bitfit", "ia3", "baseline (baseline)"), start=1):
        assert f'<td>{method}</td><td data-sort="2">2 of 2</td><td data-sort="{rank}">{rank}.00 [' in page
    assert "prefix_tuning" not in page  # failed everywhere: no result to aggregate
    assert '<a href="../tiny-alpha/#m-lora">81.00</a>' in page and "<td>missing</td>" in page
    index = (docs / "leaderboard" / "index.md").read_text()
    assert "[Across datasets](aggregate.md)" in index


def test_the_page_across_datasets_is_in_the_built_site(generated, tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    records, _, _ = generated
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    build_site(records, docs)
    site = tmp_path / "site"
    build(load_config(str(ROOT / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(site), strict=True))
    across = (site / "leaderboard" / "aggregate" / "index.html").read_text()
    assert "Across datasets" in across and 'href="../tiny-alpha/#m-lora"' in across
    assert 'href="../leaderboard/aggregate/"' in (site / "quickstart" / "index.html").read_text()  # the nav


def regression(method, seed, noise, role="method"):
    """A regression record (Spearman primary) on dataset "sts": predictions off by ``noise``."""
    made = synthetic("sts", method, seed, 50, role=role)
    made.task, made.metric, made.label_names = "regression", "spearman", ["score"]
    made.references = [i / 100 for i in range(100)]
    made.predictions = [r + noise * ((i * 37) % 11 - 5) / 5 for i, r in enumerate(made.references)]
    spearman = float(pd.Series(made.predictions).corr(pd.Series(made.references), method="spearman"))
    made.metrics = {"spearman": spearman, "validation_spearman": spearman, "mse": noise, "loss": noise}
    return made


def test_a_regression_table_names_its_metric_and_the_page_across_kinds_ranks_each_by_its_own(tmp_path):
    records = tmp_path / "records"
    for seed in range(2):
        for made in (
            synthetic("alpha", "baseline", seed, 50, role="baseline", params=0),
            synthetic("alpha", "lora", seed, 80),
            regression("baseline", seed, 1.0, role="baseline"),
            regression("lora", seed, 0.1),
        ):  # fmt: skip
            write_record(made, records)
    built = build_site(records, tmp_path / "docs")
    page = (tmp_path / "docs" / "leaderboard" / "tiny-sts.md").read_text()
    assert "<th>Spearman ρ (95% CI)</th>" in page and "## Spearman ρ and cost" in page
    assert (
        "regression, scored by Spearman ρ (higher is better)" in page and "a value per example: score" in page
    )
    assert "Spearman ρ: mean over seeds" in page and "test Spearman ρ vs trainable parameters" in page
    plot = (tmp_path / "docs" / "leaderboard" / "plots" / "tiny-sts-params.svg").read_text()
    assert "test Spearman ρ (mean ± 95% CI)" in plot
    across = (tmp_path / "docs" / "leaderboard" / "aggregate.md").read_text()
    assert "<th>alpha accuracy %</th>" in across and "<th>sts Spearman ρ</th>" in across
    assert "leaderboard/plots/aggregate-tiny-ranks.svg" in built.plots
    index = (tmp_path / "docs" / "leaderboard" / "index.md").read_text()
    assert "each table&#x27;s primary metric (its score column) is the mean over seeds" in index


def test_a_row_whose_metric_is_undefined_is_unranked_on_its_method_page(tmp_path):
    """The train-mean reference predicts one value: its Spearman ρ is undefined (None in the record)."""
    records = tmp_path / "records"
    for seed in range(2):
        constant = regression("train_mean", seed, 0.0, role="reference")
        constant.predictions = [0.5] * len(constant.references)
        constant.metrics = {"spearman": None, "validation_spearman": None, "mse": 0.08, "loss": 0.08}
        for made in (constant, regression("lora", seed, 0.1)):
            write_record(made, records)
    build_site(records, tmp_path / "docs")
    page = (tmp_path / "docs" / "methods" / "train_mean.md").read_text()
    assert (
        "[tiny on sts](../leaderboard/tiny-sts.md#m-train_mean): unranked (its test Spearman ρ is undefined)"
        in page
    )
    assert "rank 1, " in (tmp_path / "docs" / "methods" / "lora.md").read_text()


def test_one_dataset_per_model_has_no_page_across_datasets(tmp_path):
    records = tmp_path / "records"
    write_record(synthetic("alpha", "lora", 0, 80), records)
    built = build_site(records, tmp_path / "docs")
    assert "leaderboard/aggregate.md" not in built.pages
    assert "aggregate.md" not in (tmp_path / "docs" / "leaderboard" / "index.md").read_text()


def test_plots_are_valid_svg_with_the_frontier_and_without_failed_rows(generated):
    _, docs, built = generated
    ranks = "leaderboard/plots/aggregate-tiny-ranks.svg"
    assert len(built.plots) == 9 and built.plots[-1] == ranks
    for relative in built.plots[:-1]:
        text = (docs / relative).read_text()
        root = ElementTree.fromstring(text)
        assert root.tag.endswith("svg") and float(root.get("width").removesuffix("pt")) > 0
        assert "Pareto frontier" in text and "lora" in text and "prefix_tuning" not in text
        if not relative.endswith("-latency.svg"):  # there bitfit, never timed, is a line
            assert "(1 seed, no interval)" in text  # bitfit has one seed: a hollow marker, no error bar
    params = (docs / "leaderboard/plots/tiny-alpha-params.svg").read_text()
    assert "baseline (trains nothing)" in params  # zero trainable parameters: a reference line


def test_the_latency_plot_is_on_the_page_with_merged_points_and_unmeasured_rows_as_lines(generated):
    _, docs, built = generated
    assert "leaderboard/plots/tiny-alpha-latency.svg" in built.plots
    page = (docs / "leaderboard" / "tiny-alpha.md").read_text()
    plots = page.split("## Accuracy and cost", 1)[1].split("## Per method", 1)[0]
    assert "](plots/tiny-alpha-latency.svg)" in plots and "inference latency at batch 1" in plots
    latency = (docs / "leaderboard/plots/tiny-alpha-latency.svg").read_text()
    assert "lora (merged)" in latency and "ia3 (merged)" in latency and "baseline (merged)" not in latency
    assert "bitfit (not measured)" in latency  # a record from before inference was timed
    results = page.split("## Results", 1)[1].split("## Accuracy and cost", 1)[0]
    for header in ("load ms", "latency ms", "merged latency ms", "throughput/s", "merged throughput/s"):
        assert f">{header}<" in results, header


def test_method_pages_come_from_the_registry(generated):
    _, docs, built = generated
    for name in ("lora", "ia3", "prefix_tuning", "baseline", "majority", "head_only", "full_finetune"):
        assert f"methods/{name}.md" in built.pages
    lora = (docs / "methods" / "lora.md").read_text()
    assert "Low-rank adapters on the attention projections" in lora and "peftbench.methods.lora.Lora" in lora
    assert "<td>0.0003, 0.001, 0.003, 0.01</td>" in lora  # the --tune search space
    assert "Where these values come from" not in lora  # lora does not say
    assert "](../leaderboard/tiny-alpha.md#m-lora): rank 1" in lora
    # What the method reported about itself (Method.report), mean over the three seeds, per table.
    own = escape("final_rank_mean 5.0, final_rank_min 2.0", "markdown")
    assert "## Its own numbers" in lora and f"- tiny on alpha: {own}" in lora
    assert "## Its own numbers" not in (docs / "methods" / "ia3.md").read_text()
    assert "GPT-2: yes, BERT-like: yes, Llama-like: yes" in lora


def test_the_model_support_page_shows_each_declaration_with_its_reason(generated):
    _, docs, built = generated
    assert "methods/model-support.md" in built.pages
    page = (docs / "methods" / "model-support.md").read_text()
    rows = {line.split(" | ")[0]: line for line in page.splitlines() if line.startswith("| [")}
    assert rows["| [lora](lora.md)"].endswith("| yes | yes | yes |")
    oft = rows["| [oft](oft.md)"]
    assert "| **no**: peft's OFT adapts nn.Linear layers only, not GPT-2's transposed Conv1D" in oft
    assert oft.endswith("| yes | yes |")
    assert rows["| [prompt&#95;tuning](prompt_tuning.md)"].count("**no**") == 2  # GPT-2 and Llama-like
    assert '<a href="model-support.md">Model support</a>' in (docs / "methods" / "index.md").read_text()


def test_stale_generated_pages_go_and_hand_written_ones_stay(generated, tmp_path):
    records, _, _ = generated
    docs = tmp_path / "docs"
    build_site(records, docs)
    mine = docs / "methods" / "notes.md"
    mine.write_text("# Notes by hand\n")
    shutil.rmtree(records / "tiny-beta")
    try:
        rebuilt = build_site(records, docs)
    finally:
        sweep(records)
    assert (
        "leaderboard/tiny-beta.md" in rebuilt.removed
        and "leaderboard/plots/tiny-beta-time.svg" in rebuilt.removed
    )
    assert not (docs / "leaderboard" / "tiny-beta.md").exists() and mine.exists()


def test_docs_without_records_is_one_line_saying_what_to_pass(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["docs", "--records", str(tmp_path / "empty"), "--site", str(tmp_path / "docs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftbench: error: no run records under") and "pass --records" in err
    assert err.count("\n") == 1 and not (tmp_path / "docs").exists()


def test_markdown_and_html_escaping():
    hostile = "<script>alert(1)</script> [x](javascript:y) *a* `b` | c {#d}\nnext line"
    assert escape(hostile, "html") == (
        "&lt;script&gt;alert(1)&lt;/script&gt; [x](javascript:y) *a* `b` | c {#d} next line"
    )
    escaped = escape(hostile, "markdown")
    for char in "<>[]*`|{}\n":
        assert char not in escaped


class HostileMethod(HeadProbe):
    name = "hostile"
    description = "<script>alert(1)</script> and [a link](javascript:alert(2)) | pipe `tick` the model's #2"
    defaults = {"<b>key</b>": 1}


class IndexMethod(HeadProbe):
    name = "index"  # a valid name, whose page must not replace methods/index.md
    description = "A method named index."


class HostilePlugin:
    @hookimpl
    def register_methods(self, register):
        register(HostileMethod())
        register(IndexMethod())


def test_text_from_plugins_and_datasets_shows_as_text_in_the_built_site(tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    records = tmp_path / "records"
    write_record(synthetic("</title><script>alert(3)</script>", "hostile", 0, 60), records)
    with registered(HostilePlugin()):
        build_site(records, docs)
    site = tmp_path / "site"
    build(load_config(str(ROOT / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(site), strict=True))

    method = (site / "methods" / "hostile" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in method and "&lt;b&gt;key&lt;/b&gt;" in method
    pages = [path.read_text() for path in site.rglob("*.html")]
    assert not any("<script>alert" in html or 'href="javascript:' in html for html in pages)
    assert not any("</title><script>" in html or "<b>key</b>" in html for html in pages)
    # An apostrophe is escaped once (or not at all), never into a visible entity.
    index = (site / "methods" / "index.html").read_text()
    assert "model's" in index or "model&#x27;s" in index or "model&#39;s" in index
    assert not any("&amp;#x27;" in html or "&#35;x27" in html or "&amp;#35;" in html for html in pages)
    # A method named "index" has its own page; the methods index stays the index and links to it.
    assert "Every method this installation knows" in index and 'href="index-method/"' in index
    assert "A method named index." in (site / "methods" / "index-method" / "index.html").read_text()


def test_committed_pages_are_what_the_committed_records_give(tmp_path):
    """The published site is reproducible: regenerating from leaderboard/records (with the previous
    protocol's records in leaderboard/previous, as `peftbench docs` reads them) changes nothing."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    leaderboard = ROOT / "leaderboard"
    built = build_site(
        leaderboard / "records",
        docs,
        benchmarks_dir=ROOT / "benchmarks" / "results",
        previous_dir=leaderboard / "previous",
    )
    committed = ROOT / "docs"
    # Pages must match byte for byte; plots must exist (their bytes follow the matplotlib release).
    stale = [p for p in built.pages if (docs / p).read_bytes() != _bytes_or_none(committed / p)]
    stale += [p for p in built.plots if not (committed / p).is_file()]
    assert not built.removed and not stale, (
        f"generated pages differ from the committed ones ({(built.removed + stale)[:5]}); run "
        "`peftbench docs --records leaderboard/records --site docs` and commit the result"
    )


def _bytes_or_none(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def test_a_method_named_index_gets_its_own_page_and_the_index_links_to_it():
    assert method_slug("index") == "index-method" and method_slug("lora") == "lora"
    registry = MethodRegistry(
        {
            "index": RegisteredMethod(probe("index"), "peftbench-index 0.1"),
            "lora": RegisteredMethod(probe("lora"), "built-in"),
        }
    )
    out = method_pages.pages(registry, [])
    assert set(out) == {
        "methods/index.md",
        "methods/model-support.md",
        "methods/index-method.md",
        "methods/lora.md",
    }
    assert out["methods/index.md"].startswith("# Methods\n")
    assert "[index](index-method.md)" in out["methods/index.md"]
    assert "[lora](lora.md)" in out["methods/index.md"]
    assert out["methods/index-method.md"].startswith("# index\n")


def with_curves(made: RunRecord, steps: int = 40) -> RunRecord:
    """``made`` as a record that kept its learning curves: loss down, accuracy up, by seed."""
    made.curves = {
        "train_loss": [[step, 0.7 - step / 100 + made.seed / 50] for step in range(10, steps + 1, 10)],
        "validation_accuracy": [[step, 0.5 + step / 100 + made.seed / 50] for step in range(8, steps + 1, 8)],
        "validation_loss": [[step, 0.6] for step in range(8, steps + 1, 8)],
    }
    return made


def test_learning_curves_are_plotted_per_method_and_tables_without_them_say_so(tmp_path):
    records = tmp_path / "records"
    for seed in range(3):
        write_record(synthetic("alpha", "baseline", seed, 50, role="baseline", params=0), records)
        write_record(with_curves(synthetic("alpha", "lora", seed, 80 + seed, params=4000)), records)
        write_record(with_curves(synthetic("alpha", "ia3", seed, 70 + seed, params=800)), records)
    write_record(with_curves(synthetic("alpha", "bitfit", 0, 75, params=2000)), records)
    write_record(synthetic("beta", "lora", 0, 80), records)  # written before records kept curves
    built = build_site(records, tmp_path / "docs")
    docs = tmp_path / "docs" / "leaderboard"
    curve_plots = sorted(p for p in built.plots if "-curve-" in p)
    assert curve_plots == [
        "leaderboard/plots/tiny-alpha-curve-train-loss.svg",
        "leaderboard/plots/tiny-alpha-curve-validation-accuracy.svg",
    ]
    for relative in curve_plots:
        text = (tmp_path / "docs" / relative).read_text()
        assert ElementTree.fromstring(text).tag.endswith("svg") and len(text) > 1000
        assert "lora (3 seeds)" in text and "ia3 (3 seeds)" in text and "bitfit (1 seed, no band)" in text
        assert "baseline" not in text and "lowest to highest seed" in text
    alpha = (docs / "tiny-alpha.md").read_text()
    curves = alpha.split("## Learning curves", 1)[1].split("## Per method", 1)[0]
    assert "(plots/tiny-alpha-curve-train-loss.svg)" in curves
    assert "(plots/tiny-alpha-curve-validation-accuracy.svg)" in curves
    assert "the mean over seeds, the shaded band: lowest to highest seed" in curves
    beta = (docs / "tiny-beta.md").read_text()
    assert "No learning curves: none of this table's completed runs recorded one" in beta
    assert "-curve-" not in beta and (docs / "plots" / "tiny-beta-params.svg").is_file()
