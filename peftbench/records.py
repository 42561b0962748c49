"""The run record: one self-describing JSON file per (model, dataset, method, hp, seed) run.

Records are written atomically (temporary file, then rename), so a killed sweep leaves either a
whole record or none. Reading never trusts a file: anything unreadable is reported and skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from peftbench.atomic import write_atomically
from peftbench.record_checks import MAX_DEPTH, check_depth, check_fields, kind

SCHEMA_VERSION = 1
DEFAULT_TASK = "classification"  # what a record that names no task was
DEFAULT_METRIC = "accuracy"
RECORDS_DIR = "records"
ADAPTERS_DIR = "adapters"
STATUSES = ("complete", "failed", "diverged")
#: The ``metrics`` key of the primary metric's bootstrap standard error at the last point of the
#: validation curve (a run trained to its maximum), which the ``still improving`` flag reads.
LAST_STANDARD_ERROR = "validation_standard_error"


class RecordWarning(UserWarning):
    """A record file was skipped because it could not be read or validated."""


@dataclass
class RunRecord:
    run_id: str
    status: str
    model: str
    dataset: str
    method: str
    seed: int
    method_source: str = "built-in"
    role: str = "method"  # or "baseline" / "reference", from the method's ``role``
    stage: str = "final"  # "tune": a candidate scored on validation only; "final": on test too
    tuning: dict[str, Any] | None = None  # final runs of a tuned sweep: the choice and candidates
    # Runs of a sweep with --budget: {"asked", "target", "key", "value", "achieved", "within"}, the
    # size the method was given (``value`` of ``key``, also in ``hyperparameters``) and how close.
    budget: dict[str, Any] | None = None
    dataset_fingerprint: str = ""
    #: ``{"examples": N, "of": M, "seed": S}`` where the run trained on a fixed subset of the training
    #: split (``--train-examples``; the dataset's name says ``[train=N]``); null for the whole split.
    train_subset: dict[str, int] | None = None
    label_names: list[str] = field(default_factory=list)  # class names, or the regression target's
    #: The kind of task (``peftbench.tasks``) and its primary metric, with the metric's direction:
    #: what ranks, tunes and names the run's row. Records written before tasks existed are
    #: single-text classification scored by accuracy, which these defaults say.
    task: str = DEFAULT_TASK
    metric: str = DEFAULT_METRIC
    higher_is_better: bool = True
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    #: The method's own numbers about what it trained (``Method.report``): AdaLoRA's final ranks,
    #: a regulariser's value; empty where the method reports none (and in older records).
    method_metrics: dict[str, float] = field(default_factory=dict)
    reload: dict[str, Any] = field(default_factory=dict)
    #: Learning curves by series ("train_loss", "validation_<metric>", "validation_loss"), each a
    #: list of [step, value] pairs; empty for records written before curves were (or no training).
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    #: {"kept_step", "last_step", "max_steps", "stopped_early", "until", "continued_from", "from_step"}
    #: (``runner._training``); null in records from before 0.4.
    training: dict[str, Any] | None = None
    predictions: list[float] = field(default_factory=list)  # test predictions (class ids, values), in order
    references: list[float] = field(default_factory=list)  # test labels, for paired comparisons
    adapter_path: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    error: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def peftbench_version(self) -> str | None:
        """The peftbench version that wrote this record (from its environment), if it says."""
        packages = self.environment.get("packages") if isinstance(self.environment, dict) else None
        version = packages.get("peftbench") if isinstance(packages, dict) else None
        return str(version) if version else None

    def primary_score(self, split: str = "test") -> float | None:
        """The run's primary metric on ``split`` ("test" or "validation"): ``metrics[metric]`` or
        ``metrics["validation_" + metric]``; ``None`` where it was not measured."""
        key = self.metric if split == "test" else f"{split}_{self.metric}"
        value = self.metrics.get(key)
        return None if value is None else float(value)

    def fail(self, status: str, message: str, phase: str) -> RunRecord:
        """Mark the run ``failed`` or ``diverged`` with what went wrong and in which phase."""
        self.status = status
        self.error = f"{message} (during {phase})"
        self.finished_at = now()
        return self

    def to_json(self) -> str:
        return json.dumps(_finite(dataclasses.asdict(self)), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Validate ``data`` as a record: every field the leaderboard and site read, with its type."""
        if not isinstance(data, dict):
            raise ValueError(f"a record must be a JSON object, got {kind(data)}")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"unknown schema version {version!r} (this peftbench reads {SCHEMA_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(data)
        if missing:
            raise ValueError(f"missing fields: {', '.join(sorted(missing))}")
        check_depth(data)
        fields = {k: v for k, v in data.items() if k in names}
        check_fields(fields)
        record = cls(**fields)
        if record.status not in STATUSES:
            raise ValueError(f"unknown status {record.status!r}")
        return record


def task_identity(task: str, metric: str) -> dict[str, str]:
    """What a run's kind of task and primary metric add to its identity (run id, configuration):
    nothing for single-text classification by accuracy, so the runs of records written before
    tasks existed keep their ids and rows."""
    if (task, metric) == (DEFAULT_TASK, DEFAULT_METRIC):
        return {}
    return {"task": task, "metric": metric}


def now() -> str:
    """The time stamp records use: UTC, to the second, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_key(parts: dict[str, Any]) -> str:
    """A short stable hash of everything that determines a run's result."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def record_path(out: Path, run_id: str) -> Path:
    return Path(out) / RECORDS_DIR / f"{run_id}.json"


def write_record(record: RunRecord, out: Path) -> Path:
    """Write ``record`` under ``out/records/`` atomically; returns its path."""
    path = record_path(out, record.run_id)
    content = record.to_json().encode("utf-8")
    write_atomically(path, lambda file: file.write(content))
    return path


def read_record(path: Path) -> RunRecord:
    """Parse one record as data only; raises ``ValueError`` saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON, truncated or corrupt ({error})") from error
    except RecursionError as error:
        raise ValueError(
            f"JSON nested too deeply to read (a record is at most {MAX_DEPTH} levels deep)"
        ) from error
    return RunRecord.from_dict(data)


def read_records(folder: str | Path) -> list[RunRecord]:
    """Every valid record under ``folder``: a run's ``--out`` (its ``records/``), or a tree of them
    in any sub-folders (``leaderboard/records/<model>-<dataset>/``), skipping adapter folders and
    hidden files. A run id seen twice counts once; bad files are warned about by path, skipped."""
    folder = Path(folder)
    if (folder / RECORDS_DIR).is_dir():
        folder = folder / RECORDS_DIR
    records: dict[str, RunRecord] = {}
    for path in sorted(folder.rglob("*.json")):
        relative = path.relative_to(folder).parts
        if ADAPTERS_DIR in relative[:-1] or any(part.startswith(".") for part in relative):
            continue
        try:
            record = read_record(path)
        except (OSError, ValueError, TypeError) as error:
            warnings.warn(f"skipped record {path}: {error}", RecordWarning, stacklevel=2)
            continue
        records.setdefault(record.run_id, record)
    return list(records.values())


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so any JSON reader can parse a record."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
