"""Engine benchmark results on the site: every results file a page, GPU ones listed first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT, record
from peftbench.cli import main
from peftbench.docgen import build_site
from peftbench.docgen.markup import is_generated
from peftbench.records import write_record

GPU_RESULTS = """# GPU check on NVIDIA H100 80GB HBM3

2026-12-01 10:00 UTC, peftbench 0.3.0, torch 2.13.0, written by `benchmarks/gpu_check.sh`.

| engine | train s |
|---|---:|
| peftbench (bf16) | 12.5 |
"""
CPU_RESULTS = (
    "# peftbench vs HF Trainer on a test CPU\n\n2026-11-28, fp32.\n\n| engine | train s |\n|---|---:|\n"
)


@pytest.fixture
def site(tmp_path) -> tuple[Path, Path, Path]:
    """(records, results, docs): one finished table and two machines' results files."""
    records, results = tmp_path / "records", tmp_path / "results"
    for seed in range(2):
        extra = {"predictions": [0, 1, 1, 0], "references": [0, 1, 0, 0], "label_names": ["a", "b"]}
        write_record(record("lora", seed, 0.75, **extra), records)
        write_record(record("baseline", seed, 0.5, role="baseline", **extra), records)
    results.mkdir()
    (results / "nvidia-h100-80gb-hbm3.md").write_text(GPU_RESULTS)
    (results / "cpu-test.md").write_text(CPU_RESULTS)
    return records, results, tmp_path / "docs"


def test_every_results_file_gets_its_page_and_the_gpu_ones_come_first(site):
    records, results, docs = site
    built = build_site(records, docs, benchmarks_dir=results)

    gpu = (docs / "benchmarks" / "nvidia-h100-80gb-hbm3.md").read_text()
    assert is_generated(gpu) and gpu.startswith("# GPU check on NVIDIA H100 80GB HBM3\n")
    assert "| peftbench (bf16) | 12.5 |" in gpu and "written by `benchmarks/gpu_check.sh`" in gpu
    index = (docs / "benchmarks" / "index.md").read_text()
    gpu_at = index.index("[GPU check on NVIDIA H100 80GB HBM3](nvidia-h100-80gb-hbm3.md)")
    cpu_at = index.index("[peftbench vs HF Trainer on a test CPU](cpu-test.md): 2026-11-28, fp32.")
    assert index.index("## GPU") < gpu_at < index.index("## CPU") < cpu_at
    assert "[Engine benchmarks](../benchmarks/index.md)" in (docs / "leaderboard" / "index.md").read_text()
    assert {"benchmarks/index.md", "benchmarks/cpu-test.md"} <= set(built.pages)


def test_without_gpu_results_the_index_says_how_to_get_them(site):
    records, results, docs = site
    (results / "nvidia-h100-80gb-hbm3.md").unlink()
    build_site(records, docs, benchmarks_dir=results)
    index = (docs / "benchmarks" / "index.md").read_text()
    assert "## GPU\n\nNone yet: `bash benchmarks/gpu_check.sh` on a CUDA machine" in index


def test_a_removed_results_file_loses_its_page_and_no_folder_leaves_the_pages_alone(site):
    records, results, docs = site
    build_site(records, docs, benchmarks_dir=results)
    (results / "cpu-test.md").unlink()
    assert build_site(records, docs, benchmarks_dir=results).removed == ["benchmarks/cpu-test.md"]
    kept = (docs / "benchmarks" / "nvidia-h100-80gb-hbm3.md").read_bytes()
    assert build_site(records, docs).removed == []
    assert (docs / "benchmarks" / "nvidia-h100-80gb-hbm3.md").read_bytes() == kept


def test_a_missing_results_folder_is_one_line_and_writes_nothing(site, capsys):
    records, results, docs = site
    args = ["docs", "--records", str(records), "--site", str(docs), "--benchmarks", str(results / "nope")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("peftbench: error: benchmark results folder") and "pass --benchmarks" in err
    assert err.count("\n") == 1 and not docs.exists()


def test_the_gpu_results_are_linked_from_the_built_site(site, tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    records, results, _ = site
    docs = tmp_path / "site-docs"
    shutil.copytree(ROOT / "docs", docs)
    build_site(records, docs, benchmarks_dir=results)
    out = tmp_path / "built"
    build(load_config(str(ROOT / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(out), strict=True))
    index = (out / "benchmarks" / "index.html").read_text()
    assert 'href="nvidia-h100-80gb-hbm3/"' in index and 'href="cpu-test/"' in index
    assert 'href="../benchmarks/"' in (out / "leaderboard" / "index.html").read_text()
    assert "12.5" in (out / "benchmarks" / "nvidia-h100-80gb-hbm3" / "index.html").read_text()
