"""What a leaderboard page states about how its numbers were made, read from the records alone.

Model, dataset, hardware, dates and package versions come from each record's own fields and
``environment``, so a page can never claim a setup its records do not show. Where records
disagree (two machines, two torch versions) every value is listed, not just one.
"""

from __future__ import annotations

from collections.abc import Iterable

from peftbench.formatting import escape, value
from peftbench.leaderboard.search_cost import phase_totals
from peftbench.records import RunRecord
from peftbench.tasks.metrics import display_metric

TRAINING_SETTINGS = (
    "epochs",
    "batch_size",
    "max_length",
    "max_steps",
    "checkpoints",
    "patience",
    "precision",
)
SEARCHES = {"halving": "successive halving", "grid": "exhaustive search"}


def _distinct(values: Iterable[str]) -> list[str]:
    """Unique non-empty values, in sorted order (stable output for the same records)."""
    return sorted({text for text in values if text})


def _joined(values: Iterable[str], separator: str = "; ", empty: str = "not recorded") -> str:
    """Escaped unique values joined by ``separator`` (itself markup, e.g. ``<br>``)."""
    return separator.join(escape(text, "html") for text in _distinct(values)) or empty


def hardware(environment: dict) -> str:
    """One line per machine: processor or GPU, cores, threads and vector instructions, as the
    record saw them, and the machine's tag (``environment.machine_tag``) where recorded."""
    device = str(environment.get("device") or "")
    name = environment.get("cpu_model") or environment.get("device_name") or "unknown"
    tag = environment.get("machine")
    machine = f"; machine {tag}" if tag else ""
    if device.startswith("cuda"):
        return f"GPU {environment.get('device_name') or device} ({device}{machine})"
    cores = environment.get("cpu_count")
    threads = environment.get("torch_threads")
    parts = (
        f"{cores} cores" if cores else "",
        f"{threads} torch threads" if threads else "",
        environment.get("cpu_capability") or "",
        {True: "native bf16", False: "no native bf16"}.get(environment.get("cpu_bf16"), ""),
    )
    detail = ", ".join(part for part in parts if part) + machine
    return f"CPU {name}" + (f" ({detail.removeprefix('; ')})" if detail else "")


def packages(records: list[RunRecord]) -> str:
    """``name version`` for every package the records list; several versions joined with ' / '."""
    versions: dict[str, set[str]] = {}
    for record in records:
        for name, version in (record.environment.get("packages") or {}).items():
            versions.setdefault(str(name), set()).add(str(version) if version else "not installed")
    parts = [f"{name} {' / '.join(sorted(found))}" for name, found in sorted(versions.items())]
    return escape(", ".join(parts), "html") or "not recorded"


def dates(records: list[RunRecord]) -> str:
    """The span of the runs' ``finished_at`` dates (UTC as recorded), never the build date."""
    days = _distinct(record.finished_at[:10] for record in records)
    if not days:
        return "not recorded"
    span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    return f"runs finished {span} (from the records' finished_at)"


def protocol(final: list[RunRecord], every: list[RunRecord]) -> str:
    """Seeds, whether and how hyper-parameters were tuned, and the training settings."""
    seeds = ", ".join(str(seed) for seed in sorted({record.seed for record in final}))
    tuned = [record for record in final if record.tuning]
    candidates = sum(1 for record in every if record.stage == "tune")
    searches = _distinct(str(record.tuning.get("search") or "") for record in tuned)
    if searches:  # since 0.4: a search strategy, several tuning seeds, the best checkpoint kept
        counts = _distinct(str(len(r.tuning.get("settings", {}).get("tune_seeds") or [])) for r in tuned)
        scores = _distinct(str(r.tuning.get("score") or "validation accuracy") for r in tuned)
        tuning = (
            f"tuned on the validation split by {' / '.join(SEARCHES.get(s, s) for s in searches)} "
            f"({candidates} tuning runs; a candidate's score is its mean {' / '.join(scores)} over "
            f"{' / '.join(counts)} seeds, ties to the lower validation loss; test never evaluated for "
            "tuning runs), then every seed evaluated on test, each run's kept model being its best "
            "validation checkpoint"
        )
    elif tuned:
        tuning = (
            f"tuned on the validation split ({candidates} candidate runs with the first seed; "
            "test never evaluated for candidates), then every seed evaluated on test"
        )
    else:
        tuning = "not tuned: each method's defaults (or --hp overrides)"
    settings = _distinct(
        ", ".join(
            f"{key}={value(record.train_config.get(key))}"
            for key in TRAINING_SETTINGS
            if key in record.train_config
        )
        for record in final
    )
    return "<br>".join(
        escape(line, "html") for line in (f"seeds {seeds}", tuning, *(f"training: {s}" for s in settings))
    )


def task(records: list[RunRecord]) -> str:
    """The kind of task and the metric that scores the table, with its direction."""
    lines = _distinct(
        f"{record.task}, scored by {display_metric(record.metric).title} "
        f"({'higher' if record.higher_is_better else 'lower'} is better)"
        for record in records
    )
    return "<br>".join(escape(line, "html") for line in lines) or "not recorded"


def labels(records: list[RunRecord]) -> str:
    names = _distinct(", ".join(str(name) for name in record.label_names) for record in records)
    if not names:
        return "not recorded"
    if not all(_predicts_classes(record.task) for record in records):
        return escape(f"a value per example: {' / '.join(names)}", "html")
    counts = _distinct(str(len(record.label_names)) for record in records)
    return escape(f"{' / '.join(counts)} classes: {' / '.join(names)}", "html")


def _predicts_classes(kind: str) -> bool:
    """Whether a kind of task predicts classes (one no installed plugin declares is assumed to)."""
    from peftbench.tasks.registry import collect_tasks

    tasks = collect_tasks()
    return kind not in tasks.names() or tasks.get(kind).classes


def training_examples(records: list[RunRecord]) -> str:
    """``the whole training split``, or the fixed subset the runs trained on (``--train-examples``)."""
    subsets = _distinct(
        f"a fixed random subset of {s['examples']:,} of the {s['of']:,} (seed {s['seed']}, the same "
        "for every method and seed); validation and test untouched"
        for s in (record.train_subset for record in records)
        if s
    )
    return escape(" / ".join(subsets) or "the whole training split", "html")


def test_size(records: list[RunRecord]) -> str:
    sizes = _distinct(str(len(record.references)) for record in records if record.references)
    return escape(" / ".join(sizes) + " examples", "html") if sizes else "not recorded"


def compute(records: list[RunRecord]) -> str:
    """What the table cost over every run, tuning runs and reference rows included, phase by phase
    (a run that continued another's saved state counts what it spent itself)."""
    totals = phase_totals(records)
    phases = ", ".join(f"{phase} {seconds / 60:,.1f}" for phase, seconds in totals.items() if seconds)
    return escape(
        f"{sum(totals.values()) / 60:,.1f} min in {len(records)} runs, tuning runs included"
        + (f" (minutes: {phases})" if phases else "")
        + "; the sweep's shared work (loading, tokenising, frozen features) is not counted",
        "html",
    )


# What was wrong with records written by older peftbench versions, fixed since: a page built from
# such records says so rather than let its numbers pass for the current harness's.
KNOWN_ISSUES = {
    "0.1.0": (
        "written by peftbench 0.1.0, in which what a method adds (LoRA's A, prefixes) was initialised "
        "the same for every seed, so the spread over seeds leaves out initialisation variance; its "
        "search ranges were narrower, and most tuned values sit at their end (marked grid edge)"
    ),
}


def known_issues(records: list[RunRecord]) -> str:
    """The known issues of the peftbench versions that wrote ``records``, or ``none known``."""
    found = [f"{KNOWN_ISSUES[version]}." for version in flawed_versions(records)]
    return "<br>".join(escape(line, "html") for line in found) or "none known"


def flawed_versions(records: list[RunRecord]) -> list[str]:
    """The peftbench versions among the records' writers that have known issues."""
    return [v for v in _distinct(r.peftbench_version or "" for r in records) if v in KNOWN_ISSUES]


def setup_rows(final: list[RunRecord], every: list[RunRecord]) -> list[tuple[str, str]]:
    """(label, safe HTML) rows describing one (model, dataset) table's setup."""
    environments = [record.environment for record in every]
    return [
        ("Model", _joined(record.model for record in final)),
        ("Dataset", _joined(record.dataset for record in final)),
        ("Task", task(final)),
        ("Labels", labels(final)),
        ("Training examples", training_examples(final)),
        ("Test split", test_size(final)),
        ("Dataset fingerprint", _joined([record.dataset_fingerprint for record in final], ", ")),
        ("Hardware", _joined(hardware(env) for env in environments)),
        ("Platform", _joined(str(env.get("platform") or "") for env in environments)),
        ("Python", _joined([str(env.get("python") or "") for env in environments], ", ")),
        ("Packages", packages(every)),
        ("Date", escape(dates(every), "html")),
        ("Protocol", protocol(final, every)),
        ("Compute", compute(every)),
        ("Known issues", known_issues(every)),
        ("Data notes", _joined([note for record in final for note in record.notes], "<br>", "none")),
    ]


def summary_line(final: list[RunRecord], every: list[RunRecord]) -> str:
    """Model, dataset, hardware and date in one escaped line (for the leaderboard index)."""
    machine = "; ".join(_distinct(hardware(r.environment) for r in every)) or "hardware not recorded"
    flawed = flawed_versions(every)
    caveat = f"; written by peftbench {', '.join(flawed)}: see its known issues" if flawed else ""
    return escape(f"{machine}; {dates(every)}; {len(final)} test runs{caveat}", "html")
