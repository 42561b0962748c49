"""Engine benchmark results (``benchmarks/results/*.md``) -> the site's ``benchmarks/`` pages.

Each results file is one machine's measurement of the engine against HF Trainer, written by
hand from ``pytest benchmarks`` (CPU files, named ``cpu-*.md``) or by ``benchmarks/gpu_check.sh``
(named after the card, e.g. ``nvidia-h100-80gb-hbm3.md``). Every file becomes a page of its own,
unchanged but for the generated-page marker below its title, and the index lists the GPU files
first, then the CPU ones, so a GPU measurement is linked from the site as soon as it is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peftbench.docgen.markup import page, slug
from peftbench.errors import PeftbenchError
from peftbench.formatting import escape

SECTION = "benchmarks"
#: Where ``peftbench docs`` looks for results when ``--benchmarks`` is not given.
DEFAULT_RESULTS = Path("benchmarks") / "results"
CPU_PREFIX = "cpu-"


@dataclass(frozen=True)
class ResultsFile:
    """One machine's results: the page name, its title and the Markdown below the title (written
    by the project, so shown as it is, unlike names from records and plugins)."""

    name: str
    title: str
    body: str

    @property
    def gpu(self) -> bool:
        return not self.name.startswith(CPU_PREFIX)

    @property
    def summary(self) -> str:
        """The first paragraph below the title (date, versions, command), or nothing."""
        first = self.body.strip().split("\n\n", 1)[0].strip()
        return "" if first.startswith(("#", "|", "```")) else " ".join(first.split())


def read_results(folder: str | Path) -> list[ResultsFile]:
    """Every ``*.md`` directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PeftbenchError(
            f"benchmark results folder '{folder}' does not exist: pass --benchmarks the folder of "
            "results files (benchmarks/results in a checkout of peftbench)"
        )
    results = []
    for path in sorted(folder.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        heading, _, body = text.partition("\n")
        if not heading.startswith("# "):
            heading, body = f"# {path.stem}", text
        name = slug(path.stem)
        name = "index-results" if name == "index" else name  # index.md is the section's index
        results.append(ResultsFile(name=name, title=heading[2:].strip(), body=body))
    return results


def pages(results: list[ResultsFile]) -> dict[str, str]:
    """The index and one page per results file, keyed by their path under the docs folder."""
    texts = {f"{SECTION}/{result.name}.md": page(result.title, result.body) for result in results}
    texts[f"{SECTION}/index.md"] = index_page(results)
    return texts


def index_page(results: list[ResultsFile]) -> str:
    """Every results file, GPU ones first, each with its title and first paragraph."""
    intro = (
        "<p>How fast the training engine is against Hugging Face Trainer, measured per machine "
        "(the leaderboard's own timings are in each table). A figure holds for the machine, "
        "precision and versions its page names, and nowhere else.</p>"
    )
    blocks = [intro]
    for heading, group, missing in (
        ("GPU", [r for r in results if r.gpu], "None yet: `bash benchmarks/gpu_check.sh` on a CUDA "
         "machine writes one to `benchmarks/results/`."),
        ("CPU", [r for r in results if not r.gpu], "None yet: `pytest benchmarks` measures one."),
    ):  # fmt: skip
        items = [
            f"- [{escape(r.title, 'markdown')}]({r.name}.md)" + (f": {r.summary}" if r.summary else "")
            for r in group
        ]
        blocks += [f"## {heading}", "\n".join(items) or missing]
    return page("Engine benchmarks", *blocks)
