"""Records + method registry -> the generated pages and plots of the documentation site.

``build_site`` owns ``<site>/leaderboard/`` and ``<site>/methods/`` (and ``<site>/benchmarks/``
when given a folder of benchmark results): it rewrites every page it generates there and removes
generated pages and plots that no longer have a source (a method uninstalled, a table whose
records were removed). Hand-written pages elsewhere are untouched. The output depends on nothing
but the records, the registry, the benchmark results and the code: no clock, no host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from peftbench.docgen import aggregate_page, benchmark_pages, leaderboard_pages, method_pages
from peftbench.docgen.curve_plots import render_curve_plots
from peftbench.docgen.markup import is_generated
from peftbench.docgen.plots import render_plots
from peftbench.errors import PeftbenchError
from peftbench.leaderboard import Leaderboard
from peftbench.leaderboard.changes import changes
from peftbench.plugins import MethodRegistry, collect_methods
from peftbench.records import read_records

LEADERBOARD_DIR = "leaderboard"
METHODS_DIR = "methods"
PLOTS_DIR = "plots"
AGGREGATE_PAGE = f"{aggregate_page.PAGE}.md"
#: Where the previous protocol's records are kept, for each page's "What changed" section.
DEFAULT_PREVIOUS = Path("leaderboard/previous")


@dataclass
class SiteBuild:
    """What one generation wrote, relative to the docs folder."""

    pages: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    records: int = 0


def build_site(
    records_dir: str | Path,
    docs_dir: str | Path,
    registry: MethodRegistry | None = None,
    benchmarks_dir: str | Path | None = None,
    previous_dir: str | Path | None = None,
) -> SiteBuild:
    """Generate the leaderboard pages, their plots and the method pages under ``docs_dir``, and
    the benchmark pages from ``benchmarks_dir`` where one is given (left as they are where not);
    each table page compares itself with the same table in ``previous_dir``'s records, if given."""
    records_dir, docs_dir = Path(records_dir), Path(docs_dir)
    if not records_dir.is_dir():
        raise PeftbenchError(
            f"records folder '{records_dir}' does not exist: pass --records a folder of run records "
            "(a run's --out, or leaderboard/records)"
        )
    records = read_records(records_dir)
    if not any(record.stage == "final" for record in records):
        raise PeftbenchError(
            f"no run records under '{records_dir}': pass --records a folder holding the records/*.json "
            "that 'peftbench run --out' writes"
        )
    results = benchmark_pages.read_results(benchmarks_dir) if benchmarks_dir is not None else None
    registry = registry or collect_methods()
    known = set(registry.names())
    result = SiteBuild(records=len(records))

    board = Leaderboard(records)
    tables = leaderboard_pages.split_tables(board)
    changed = changes(board, Leaderboard(read_records(previous_dir))) if previous_dir is not None else None
    aggregated = board.aggregate()
    across = aggregate_page.aggregate_page(aggregated, tables)
    engines = f"../{benchmark_pages.SECTION}/index.md" if results is not None else None
    index = leaderboard_pages.index_page(tables, AGGREGATE_PAGE if across else None, engines)
    texts = {f"{LEADERBOARD_DIR}/index.md": index}
    if results is not None:
        texts.update(benchmark_pages.pages(results))
    if across:
        texts[f"{LEADERBOARD_DIR}/{AGGREGATE_PAGE}"] = across
    for table in tables:
        texts[f"{LEADERBOARD_DIR}/{table.slug}.md"] = leaderboard_pages.table_page(table, known, changed)
    texts.update(method_pages.pages(registry, tables))
    for relative, text in texts.items():
        _write(docs_dir / relative, text.encode("utf-8"))
    result.pages = sorted(texts)

    for table in tables:
        plots = render_plots(table.frame, table.slug, table.title, table.metric)
        plots.update(render_curve_plots(table.frame, table.curves, table.slug, table.title, table.metric))
        for name, data in plots.items():
            relative = f"{LEADERBOARD_DIR}/{PLOTS_DIR}/{name}"
            _write(docs_dir / relative, data)
            result.plots.append(relative)
    for name, data in (aggregate_page.rank_plots(aggregated) if across else {}).items():
        relative = f"{LEADERBOARD_DIR}/{PLOTS_DIR}/{name}"
        _write(docs_dir / relative, data)
        result.plots.append(relative)
    owned = [LEADERBOARD_DIR, METHODS_DIR] + ([benchmark_pages.SECTION] if results is not None else [])
    result.removed = _remove_stale(docs_dir, set(result.pages) | set(result.plots), owned)
    return result


def _write(path: Path, data: bytes) -> None:
    """Write only when the bytes change, so an unchanged file keeps its time stamp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def _remove_stale(docs_dir: Path, keep: set[str], owned: list[str]) -> list[str]:
    """Delete generated pages and plots this generation did not write in the ``owned`` folders;
    never hand-written pages."""
    removed = []
    candidates = [
        *(path for folder in owned for path in (docs_dir / folder).glob("*.md")),
        *(docs_dir / LEADERBOARD_DIR / PLOTS_DIR).glob("*.svg"),
    ]
    for path in sorted(candidates):
        relative = path.relative_to(docs_dir).as_posix()
        if relative in keep:
            continue
        if path.suffix == ".svg" or is_generated(path.read_text(encoding="utf-8")):
            path.unlink()
            removed.append(relative)
    return removed
