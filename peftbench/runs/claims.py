"""Claims: which sweep runs which run of a shared results folder, and which sweeps are at work on it.

Several sweeps may write one results folder at once (two terminals, a scheduled job overlapping a
manual one, Ray drivers on several machines): each run is claimed by one sweep and the others wait
for its record. A claim is a lease on ``claims/<run id>.lock`` (``filelock.SoftFileLease``): its
marker names the process that holds it (pid, host, the process's start), a background thread renews
it while the run goes on, and another sweep takes it over when its holder is gone:

- at once when the holder was a process of this host (same host name and process namespace) that
  no longer runs, or whose pid now belongs to another process (killed, crashed);
- when the holder is on another host, once its marker has gone ``claim_timeout`` seconds without a
  renewal, measured on the taker's own clock (hosts need not agree on the time, but every sweep
  writing one folder must use the same timeout).

Each sweep also holds a lease on ``claims/sweeps/<sweep>.lock`` for as long as it runs, beside a
note of what it runs with (``<sweep>.json``: its threads on this host): how sweeps on one host
share its cores (``peftbench.runs.cores``).

Every decision is taken under the folder's lock (``claims/.lock``, a ``filelock.FileLock`` held
for milliseconds), so a claim released in the normal way is never mistaken for one taken over.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock, LeaseSettingsMismatch, OwnerRecord, SoftFileLease, Timeout

from peftbench.atomic import write_atomically
from peftbench.errors import PeftbenchError, storage_error

CLAIMS_DIR = "claims"
SWEEPS_DIR = "sweeps"
MUTEX_WAIT_S = 120  # the folder's lock is held for milliseconds; a minute or two means a hung holder
POLL_S = 0.5  # how often a sweep waiting for another sweep's run looks again
UNNAMED = "a sweep killed as it claimed the run, before it named itself"  # an empty claim's holder


@dataclass(frozen=True)
class Taken:
    """What became of an attempt to claim a run."""

    holder: str | None = None  # another sweep holds it: who ("pid 123 on node1")
    note: str | None = None  # ours, taken over from a sweep that is gone: what the record's notes say


@dataclass(frozen=True)
class Peer:
    """Another sweep at work on the same folder, and what it declared (``Claims.declare``)."""

    who: str
    same_host: bool
    info: dict[str, Any] = field(default_factory=dict)


class Claims:
    """This sweep's claims under ``folder`` (a results folder's ``claims/``)."""

    def __init__(self, folder: Path, timeout: float) -> None:
        self.folder, self.timeout = folder, timeout
        self.sweep = secrets.token_hex(6)  # two sweeps in one process are two sweeps
        try:
            (folder / SWEEPS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise storage_error("the claims folder", folder.parent, error) from error
        self._mutex = FileLock(folder / ".lock", timeout=MUTEX_WAIT_S)
        self._leases: dict[Path, SoftFileLease] = {}  # every lease this sweep held or looked at
        self._held: dict[str, SoftFileLease] = {}  # run id -> its claim, held by this sweep
        self._me: SoftFileLease | None = None  # this sweep's own lease, while it runs
        self._info: dict[str, Any] = {}
        self._unnamed: set[Path] = set()  # empty claims (of sweeps killed as they claimed) cleared away

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The folder's lock, held for one decision."""
        try:
            self._mutex.acquire()
        except Timeout:
            raise PeftbenchError(
                f"results folder {self.folder.parent} stayed locked for {MUTEX_WAIT_S} s by another sweep "
                f"({self._mutex.lock_file}); if no peftbench sweep writes there any more, try again"
            ) from None
        except OSError as error:  # a folder turned read-only, a permission taken away
            raise storage_error("the folder's lock", self.folder, error) from error
        try:
            yield
        finally:
            self._mutex.release()

    def take(self, run_id: str) -> Taken:
        """Claim ``run_id`` for this sweep, taking over a claim whose holder is gone; under ``locked``."""
        if run_id in self._held:
            return Taken()
        got, before = self._try(self.folder / f"{run_id}.lock")
        if not got:
            return Taken(holder=describe(before))
        path = self.folder / f"{run_id}.lock"
        lease = self._held[run_id] = self._leases[path]
        if path in self._unnamed:
            self._unnamed.remove(path)
            return Taken(note=f"claim taken over from {UNNAMED}")
        if before is None:
            return Taken()
        mine = lease.owner
        if mine is not None and before.hostname == mine.hostname:
            gone = "which no longer runs"
        else:
            gone = f"whose claim went {self.timeout:g} s without a heartbeat"
        return Taken(note=f"claim taken over from {describe(before)}, {gone}")

    def token(self, run_id: str) -> str:
        """A short name for this sweep's current claim on ``run_id`` (its staging folder carries it)."""
        return (self._held[run_id].token or self.sweep)[:12]

    def holds(self, run_id: str) -> bool:
        """Whether this sweep still holds its claim on ``run_id``: no one took it over meanwhile
        (its heartbeat may have failed for a while; what counts is whose the claim is now)."""
        lease = self._held.get(run_id)
        owner = lease.owner if lease is not None else None
        return owner is not None and lease.token is not None and owner.token == lease.token

    def release(self, run_id: str) -> None:
        """Let go of ``run_id`` (its record, if any, is written); under ``locked``."""
        lease = self._held.pop(run_id, None)
        if lease is not None:
            _let_go(lease)

    def join(self, **info: Any) -> None:
        """Say that this sweep works on the folder (with ``info``, see ``declare``); under ``locked``."""
        path = self.folder / SWEEPS_DIR / f"{self.sweep}.lock"
        self._try(path)
        self._me = self._leases[path]
        self.declare(**info)

    def declare(self, **info: Any) -> None:
        """Update what this sweep tells the others about itself (its threads on this host, ...)."""
        self._info.update(info)
        owner = self._me.owner if self._me is not None else None
        note = {**self._info, "pid": owner.pid if owner else None, "host": owner.hostname if owner else None}
        path = self.folder / SWEEPS_DIR / f"{self.sweep}.json"
        try:
            write_atomically(path, lambda file: file.write(json.dumps(note).encode()))
        except OSError as error:
            raise storage_error("this sweep's note", path.parent, error) from error

    def peers(self) -> list[Peer]:
        """The other sweeps at work on the folder, with what they declared; those gone are cleared
        away. Under ``locked``."""
        here = self._me.owner.hostname if self._me is not None and self._me.owner else None
        found = []
        for note in sorted((self.folder / SWEEPS_DIR).glob("*.json")):
            if note.stem == self.sweep:
                continue
            path = note.with_suffix(".lock")
            got, owner = self._try(path)
            if got:  # that sweep is gone
                _let_go(self._leases.pop(path))
                note.unlink(missing_ok=True)
                continue
            found.append(Peer(describe(owner), owner is not None and owner.hostname == here, _read(note)))
        return found

    def close(self) -> None:
        """Let go of every claim this sweep still holds, and of the folder; never raises (it runs
        while a sweep stops for another reason, which is the one to tell)."""
        try:
            with self.locked():
                self._let_go_of_all()
        except (OSError, PeftbenchError):  # the folder cannot be locked: let go all the same
            self._let_go_of_all()

    def _let_go_of_all(self) -> None:
        for run_id in list(self._held):
            self.release(run_id)
        if self._me is not None:
            _let_go(self._me)
            with contextlib.suppress(OSError):
                (self.folder / SWEEPS_DIR / f"{self.sweep}.json").unlink(missing_ok=True)
            self._me = None

    def _try(self, path: Path) -> tuple[bool, OwnerRecord | None]:
        """Try the lease at ``path`` once: whether this sweep has it now, and who held it before
        (``None``: no one) or holds it still."""
        lease = self._leases.get(path)
        if lease is None:
            lease = self._leases[path] = SoftFileLease(path, lease_duration=float(self.timeout))
        before = lease.owner
        if before is None and _empty(path):
            # Every claim is taken under the folder's lock, so an empty marker is not one being
            # written: its sweep was killed between creating it and naming itself there. filelock
            # would wait forever for such a marker (it reads as an old holder's), so clear it away.
            with contextlib.suppress(OSError):
                path.unlink()
                self._unnamed.add(path)
        try:
            lease.acquire(blocking=False)
        except Timeout:
            return False, lease.owner or before
        except LeaseSettingsMismatch:
            owner = lease.owner
            theirs = f"{owner.lease_duration:g} s" if owner and owner.lease_duration else "another time"
            raise PeftbenchError(
                f"results folder {self.folder.parent} is also written by {describe(owner)}, whose claims "
                f"time out after {theirs}, but this sweep's "
                f"--claim-timeout is {self.timeout:g} s: give every sweep writing one folder the same "
                "--claim-timeout"
            ) from None
        except OSError as error:
            raise storage_error("a claim", path.parent, error) from error
        return True, before


def describe(owner: OwnerRecord | None) -> str:
    """``pid 123 on node1``: a claim's holder as people know it."""
    return f"pid {owner.pid} on {owner.hostname}" if owner is not None else "another sweep"


def _empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def pause() -> None:
    """Wait a moment before looking at another sweep's work again."""
    time.sleep(POLL_S)


def _let_go(lease: SoftFileLease) -> None:
    with contextlib.suppress(OSError, RuntimeError):  # a read-only folder, or a claim lost meanwhile
        lease.release(force=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
