"""Where a sweep's results live: ``records/<run id>.json``, ``adapters/<run id>/`` and, while a
search needs them, ``states/<run id>/`` (training states that later runs continue); and who writes them.

The store owns everything about results on disk, the same for every executor and for every sweep
writing one folder at the same time (``docs/results-folder.md`` states the rules for users):

- **one writer per run**: a run is run by the one sweep that claims it (``claims.py``); another
  sweep that reaches it waits for its record and uses it (``take``);
- **resume**: runs whose complete, readable record exists are skipped unless forced;
- **staging**: a run saves its adapter into a staging folder of its own claim, never into
  ``adapters/<run id>`` itself, so a run that fails or is killed while saving cannot damage the
  adapter of an earlier complete run, nor another sweep's;
- **promotion**: a complete run's staged adapter replaces ``adapters/<run id>``, then its record is
  written (atomically); the steps are journalled, and what an interrupted promotion leaves is undone
  or finished when the run is next claimed, and at every start (``repair.py``);
- **never losing a result**: a rerun (``--force``) that fails keeps the earlier complete record and
  adapter, with a warning; a write the folder refuses (full disk, read-only, permission) stops the
  sweep in one line, with the folder as it was before that write;
- **training states**: staged like adapters (in a folder of the run's claim), kept in
  ``states/<run id>`` once their run completes (before its record is written), removed by the sweep
  once no run can continue them. A state that is missing costs time only: a run with nothing to
  continue trains from the start to the same result.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from peftbench.errors import PeftbenchError, is_storage_error, storage_error
from peftbench.records import (
    ADAPTERS_DIR,
    RecordWarning,
    RunRecord,
    read_record,
    record_path,
    write_record,
)
from peftbench.runs import repair
from peftbench.runs.claims import CLAIMS_DIR, Claims, Taken, pause
from peftbench.settings import SweepConfig

STAGING_PREFIX = repair.STAGING_PREFIX
STATES_DIR = repair.STATES_DIR
DEFAULT_CLAIM_TIMEOUT_S = SweepConfig.model_fields["claim_timeout"].default


@dataclass(frozen=True)
class Turn:
    """What the store decided about one run for this sweep: it is done, another sweep has it, or
    it is this sweep's to run (``mine``)."""

    record: RunRecord | None = None  # done: the record to use
    holder: str | None = None  # another sweep is running it ("pid 123 on node1"): ask again later
    by: str | None = None  # the record was written by this other sweep while this one waited

    @property
    def mine(self) -> bool:
        return self.record is None and self.holder is None


class ResultStore:
    """The results folder of a sweep (``--out``), checked writable and repaired when opened; close it
    (or use it as a context manager) to let go of its claims."""

    def __init__(self, out: str | Path, claim_timeout: float = DEFAULT_CLAIM_TIMEOUT_S) -> None:
        self.out = _writable_folder(Path(out).expanduser())
        self.claims = Claims(self.out / CLAIMS_DIR, claim_timeout)
        self.repairs: list[str] = []  # what opening (or a takeover) put right, for people
        self._notes: dict[str, str] = {}  # run id -> how its claim was taken over, for its record
        self._waiting: dict[str, tuple[str, str | None]] = {}  # run id -> (holder, its record's digest)
        try:
            with self.claims.locked():
                self.claims.join()
                self.claims.peers()  # refuses at once a sweep whose claims would time out differently
                for run_id in sorted(repair.interrupted_runs(self.out, self.claims.folder)):
                    if self._claim(run_id).holder is None:  # no live sweep holds it: repaired
                        self.claims.release(run_id)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        self.claims.close()

    def complete(self, run_id: str) -> RunRecord | None:
        """The run's record if it exists, reads and completed; else ``None`` (run it again)."""
        record = self._read(run_id)
        return record if record is not None and record.status == "complete" else None

    def take(self, run_id: str, force: bool = False) -> Turn:
        """Decide whether this sweep runs ``run_id`` now (then it holds the run's claim until
        ``settle``), skips it (a complete record exists, unless ``force``; or another sweep wrote its
        record while this one waited), or waits for the sweep running it (ask again after ``pause``)."""
        path = record_path(self.out, run_id)
        with self.claims.locked():
            waited = self._waiting.get(run_id)
            if not force and (done := self.complete(run_id)) is not None:
                self._waiting.pop(run_id, None)
                by = waited[0] if waited and repair.digest(path) != waited[1] else None
                return Turn(record=done, by=by)
            taken = self._claim(run_id)
            if taken.holder is not None:
                self._waiting.setdefault(run_id, (taken.holder, repair.digest(path)))
                return Turn(holder=taken.holder)
            self._waiting.pop(run_id, None)
            if waited and taken.note is None and repair.digest(path) != waited[1]:
                record = self._read(run_id)  # whatever the other sweep made of it, failed or not
                if record is not None:
                    self.claims.release(run_id)
                    return Turn(record=record, by=waited[0])
            return Turn()

    def pause(self) -> None:
        """Wait a moment before asking again about runs other sweeps hold."""
        pause()

    def staging(self, run_id: str) -> Path:
        """A fresh path (not yet created) for the run to save its adapter into: the folder of this
        sweep's claim on it, so no other sweep's run can clear or take it."""
        name = repair.leftover_name(STAGING_PREFIX, run_id, self.claims.token(run_id))
        path = self.out / ADAPTERS_DIR / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def adapter(self, run_id: str) -> Path:
        return self.out / ADAPTERS_DIR / run_id

    def state_staging(self, run_id: str) -> Path:
        """A fresh path (not yet created) for the run to save its training state into: like
        ``staging``, the folder of this sweep's claim on the run."""
        name = repair.leftover_name(STAGING_PREFIX, run_id, self.claims.token(run_id))
        path = self.out / STATES_DIR / name
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
        """Keep what a finished run produced and let go of its claim; returns the record the store
        now holds for it.

        A complete final run's staged adapter is promoted to ``adapters/<run id>`` and its record
        written. A run that did not complete never replaces an earlier complete one: that record and
        its adapter stay (and are returned); otherwise its ``failed``/``diverged`` record is written
        and any adapter under its id removed, since nothing there is usable. A write the folder
        refuses raises ``StorageError`` with the folder as it was before.
        """
        run_id = record.run_id
        with self.claims.locked():
            try:
                if not self.claims.holds(run_id):
                    warnings.warn(
                        f"another sweep took over {run_id} while it ran here (this sweep's claim went "
                        f"{self.claims.timeout:g} s without a heartbeat); the result from here is not kept",
                        RecordWarning,
                        stacklevel=2,
                    )
                    return record
                if run_id in self._notes:
                    record.notes.append(self._notes.pop(run_id))
                return self._settle(record, staged)
            finally:
                if staged is not None:
                    shutil.rmtree(staged, ignore_errors=True)
                self.claims.release(run_id)

    def write(self, record: RunRecord) -> None:
        """Write ``record`` atomically; a write the folder refuses stops the sweep in one line."""
        with self.claims.locked():
            self._write(record)

    def _settle(self, record: RunRecord, staged: Path | None) -> RunRecord:
        self._keep_state(record)
        if record.status == "complete" and record.stage == "final":
            if staged is None or not staged.is_dir():
                message = f"FileNotFoundError: the run saved no adapter folder ({staged})"
                record.fail("failed", message, "save")
            elif self._promote(record, staged):
                return record
        if record.status != "complete":
            previous = self.complete(record.run_id)
            if previous is not None:
                warnings.warn(
                    f"the rerun of {record.run_id} {record.status} ({record.error}); its earlier "
                    "complete record and adapter are kept",
                    RecordWarning,
                    stacklevel=3,
                )
                return previous
            with contextlib.suppress(OSError):
                repair.remove(self.adapter(record.run_id))  # nothing under its id is usable
        self._write(record)
        return record

    def _promote(self, record: RunRecord, staged: Path) -> bool:
        """Move the staged adapter into place and write the record (the steps ``repair`` journals);
        ``False`` when the adapter could not be moved for a reason of the run's own (it has failed)."""
        run_id, claims = record.run_id, self.claims.folder
        final = self.adapter(run_id)
        earlier = final.with_name(
            repair.leftover_name(repair.EARLIER_PREFIX, run_id, self.claims.token(run_id))
        )
        try:
            repair.begin(self.out, claims, run_id, staged, earlier)
        except OSError as error:
            raise storage_error(f"the promotion journal of {run_id}", claims, error) from error
        try:
            if final.exists():
                final.rename(earlier)
            staged.rename(final)
        except OSError as error:
            self._undo(run_id)
            if is_storage_error(error):
                raise storage_error(f"the adapter of {run_id}", final.parent, error) from error
            record.fail("failed", f"{type(error).__name__}: {error}", "save")
            return False
        record.adapter_path = final.relative_to(self.out).as_posix()
        try:
            write_record(record, self.out)
        except OSError as error:
            self._undo(run_id)
            where = record_path(self.out, run_id).parent
            raise storage_error(f"the record of {run_id}", where, error) from error
        shutil.rmtree(earlier, ignore_errors=True)
        repair.end(claims, run_id)
        return True

    def _keep_state(self, record: RunRecord) -> None:
        """A complete run's staged training state replaces ``states/<run id>``; any other is dropped.
        A state that cannot be kept is not an error: whatever would continue it trains from the start."""
        name = repair.leftover_name(STAGING_PREFIX, record.run_id, self.claims.token(record.run_id))
        staged = self.out / STATES_DIR / name
        if not staged.is_dir():
            return
        if record.status != "complete":
            shutil.rmtree(staged, ignore_errors=True)
            return
        final = self.out / STATES_DIR / record.run_id
        shutil.rmtree(final, ignore_errors=True)
        try:
            staged.rename(final)
        except OSError:
            shutil.rmtree(staged, ignore_errors=True)

    def _undo(self, run_id: str) -> None:
        """Put the folder back as it was before the promotion began (the record is unchanged)."""
        with contextlib.suppress(PeftbenchError):  # could not either: the next start repairs it
            repair.repair(self.out, self.claims.folder, run_id)

    def _write(self, record: RunRecord) -> None:
        try:
            write_record(record, self.out)
        except OSError as error:
            where = record_path(self.out, record.run_id).parent
            raise storage_error(f"the record of {record.run_id}", where, error) from error

    def _claim(self, run_id: str) -> Taken:
        """Claim ``run_id`` unless a live sweep holds it; a claim taken over gets what the gone sweep
        left repaired (and its record the note that says so)."""
        taken = self.claims.take(run_id)
        if taken.holder is None:
            self.repairs += repair.repair(self.out, self.claims.folder, run_id)
            if taken.note:
                self._notes[run_id] = taken.note
        return taken

    def _read(self, run_id: str) -> RunRecord | None:
        path = record_path(self.out, run_id)
        if not path.exists():
            return None
        try:
            return read_record(path)
        except (OSError, ValueError, TypeError):
            return None  # unreadable: run it again


def _writable_folder(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise PeftbenchError(f"output path '{out}' is a file: pass a folder for --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):  # a name of its own: sweeps started together probe at once
            pass
    except OSError as error:
        raise PeftbenchError(f"output folder '{out}' is not writable: {error.strerror}") from error
    return out
