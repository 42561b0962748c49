"""Where a sweep's results live: ``records/<run id>.json``, ``adapters/<run id>/`` and, while a
search needs them, ``states/<run id>/`` (training states that later runs continue).

The store owns everything about results on disk, the same for every executor:

- **resume**: which runs already have a complete, readable record;
- **staging**: a run saves its adapter into a private staging folder, never into
  ``adapters/<run id>`` itself, so a run that fails or is killed while saving cannot damage
  the adapter of an earlier complete run;
- **promotion**: a complete run's staged adapter replaces ``adapters/<run id>``, then its record
  is written (atomically);
- **never losing a result**: a rerun (``--force``) that fails keeps the earlier complete record
  and adapter, with a warning; the failure is still reported to the sweep.
- **training states**: staged like adapters, kept in ``states/<run id>`` once their run completes
  (before its record is written), removed by the sweep once no run can continue them. A state that
  is missing costs time only: a run with nothing to continue trains from the start to the same result.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path

from peftbench.errors import PeftbenchError
from peftbench.records import (
    ADAPTERS_DIR,
    RecordWarning,
    RunRecord,
    read_record,
    record_path,
    write_record,
)

STAGING_PREFIX = ".staging-"
STATES_DIR = "states"


class ResultStore:
    """The results folder of a sweep (``--out``), checked writable when opened."""

    def __init__(self, out: str | Path) -> None:
        self.out = _writable_folder(Path(out).expanduser())

    def complete(self, run_id: str) -> RunRecord | None:
        """The run's record if it exists, reads and completed; else ``None`` (run it again)."""
        path = record_path(self.out, run_id)
        if not path.exists():
            return None
        try:
            record = read_record(path)
        except (OSError, ValueError, TypeError):
            return None  # unreadable: run it again
        return record if record.status == "complete" else None

    def staging(self, run_id: str) -> Path:
        """A fresh path (not yet created) for the run to save its adapter into."""
        path = self.out / ADAPTERS_DIR / f"{STAGING_PREFIX}{run_id}"
        shutil.rmtree(path, ignore_errors=True)  # left behind by a sweep killed mid-save
        return path

    def adapter(self, run_id: str) -> Path:
        return self.out / ADAPTERS_DIR / run_id

    def state_staging(self, run_id: str) -> Path:
        """A fresh path (not yet created) for the run to save its training state into."""
        path = self.out / STATES_DIR / f"{STAGING_PREFIX}{run_id}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def saved_state(self, run_id: str | None) -> Path | None:
        """The kept training state of ``run_id``, if there is one."""
        path = self.out / STATES_DIR / run_id if run_id else None
        return path if path is not None and path.is_dir() else None

    def state_paths(self, run_id: str, resume: str | None, keep: bool) -> tuple[Path | None, Path | None]:
        """For a run: the saved state it continues (if it still exists), and where it saves its own."""
        return self.saved_state(resume), self.state_staging(run_id) if keep else None

    def drop_states(self, run_ids: list[str]) -> None:
        """Remove the training states of ``run_ids`` (nothing will continue them)."""
        for run_id in run_ids:
            shutil.rmtree(self.out / STATES_DIR / run_id, ignore_errors=True)
        with contextlib.suppress(OSError):  # only when empty
            (self.out / STATES_DIR).rmdir()

    def settle(self, record: RunRecord, staged: Path | None) -> RunRecord:
        """Keep what a finished run produced; returns the record the store now holds for it.

        A complete final run's staged adapter is promoted to ``adapters/<run id>`` and its record
        written. A run that did not complete never replaces an earlier complete one: that record
        and its adapter stay (and are returned); otherwise its ``failed``/``diverged`` record is
        written and any adapter under its id removed, since nothing there is usable.
        """
        if record.status == "complete" and record.stage == "final":
            self._promote(record, staged)
        if staged is not None:
            shutil.rmtree(staged, ignore_errors=True)
        self._keep_state(record)
        if record.status != "complete":
            previous = self.complete(record.run_id)
            if previous is not None:
                warnings.warn(
                    f"the rerun of {record.run_id} {record.status} ({record.error}); its earlier "
                    "complete record and adapter are kept",
                    RecordWarning,
                    stacklevel=2,
                )
                return previous
            shutil.rmtree(self.adapter(record.run_id), ignore_errors=True)
        self.write(record)
        return record

    def write(self, record: RunRecord) -> None:
        """Write ``record`` atomically; a record that cannot be written stops the sweep in one line."""
        try:
            write_record(record, self.out)
        except OSError as error:
            raise PeftbenchError(
                f"could not write the record of {record.run_id} under {self.out}: {error.strerror or error}; "
                "the records already written are kept"
            ) from error

    def _keep_state(self, record: RunRecord) -> None:
        """A complete run's staged training state replaces ``states/<run id>``; any other is dropped."""
        staged = self.out / STATES_DIR / f"{STAGING_PREFIX}{record.run_id}"
        if not staged.is_dir():
            return
        if record.status != "complete":
            shutil.rmtree(staged, ignore_errors=True)
            return
        final = self.out / STATES_DIR / record.run_id
        shutil.rmtree(final, ignore_errors=True)
        try:
            staged.rename(final)
        except OSError:  # not kept: whatever would continue it trains from the start instead
            shutil.rmtree(staged, ignore_errors=True)

    def _promote(self, record: RunRecord, staged: Path | None) -> None:
        """Move the staged adapter into place; a run whose adapter cannot be kept has failed."""
        final = self.adapter(record.run_id)
        earlier = final.with_name(f".earlier-{record.run_id}")  # kept until the new one is in place
        try:
            if staged is None or not staged.is_dir():
                raise FileNotFoundError(f"the run saved no adapter folder ({staged})")
            shutil.rmtree(earlier, ignore_errors=True)
            if final.exists():
                final.rename(earlier)
            staged.rename(final)
        except OSError as error:
            if earlier.exists() and not final.exists():
                earlier.rename(final)  # the earlier complete run's adapter stays where it was
            record.fail("failed", f"{type(error).__name__}: {error}", "save")
            return
        shutil.rmtree(earlier, ignore_errors=True)
        record.adapter_path = final.relative_to(self.out).as_posix()


def _writable_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise PeftbenchError(f"output path '{out}' is a file: pass a folder for --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".peftbench-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise PeftbenchError(f"output folder '{out}' is not writable: {error.strerror}") from error
    return out
