"""The run record: one self-describing JSON file per (model, dataset, method, hp, seed) run.

Records are written atomically (temporary file, then rename), so a killed sweep leaves either a
whole record or none. Reading never trusts a file: anything unreadable is reported and skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RECORDS_DIR = "records"
ADAPTERS_DIR = "adapters"
STATUSES = ("complete", "failed", "diverged")


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
    dataset_fingerprint: str = ""
    label_names: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    reload: dict[str, Any] = field(default_factory=dict)
    predictions: list[int] = field(default_factory=list)  # test predictions, in split order
    references: list[int] = field(default_factory=list)  # test labels, for paired comparisons
    adapter_path: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""
    error: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(_finite(dataclasses.asdict(self)), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        if not isinstance(data, dict):
            raise ValueError("a record must be a JSON object")
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
        record = cls(**{k: v for k, v in data.items() if k in names})
        if record.status not in STATUSES:
            raise ValueError(f"unknown status {record.status!r}")
        return record


def run_key(parts: dict[str, Any]) -> str:
    """A short stable hash of everything that determines a run's result."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def record_path(out: Path, run_id: str) -> Path:
    return Path(out) / RECORDS_DIR / f"{run_id}.json"


def write_record(record: RunRecord, out: Path) -> Path:
    """Write ``record`` under ``out/records/`` atomically; returns its path."""
    path = record_path(out, record.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".json.tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(record.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_record(path: Path) -> RunRecord:
    """Parse one record as data only; raises ``ValueError`` saying what is wrong with it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON, truncated or corrupt ({error})") from error
    return RunRecord.from_dict(data)


def read_records(out: Path) -> list[RunRecord]:
    """Every valid record under ``out`` (or ``out/records``); bad files are warned about by path."""
    out = Path(out)
    folder = out / RECORDS_DIR if (out / RECORDS_DIR).is_dir() else out
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(read_record(path))
        except (OSError, ValueError, TypeError) as error:
            warnings.warn(f"skipped record {path}: {error}", RecordWarning, stacklevel=2)
    return records


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null so any JSON reader can parse a record."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
