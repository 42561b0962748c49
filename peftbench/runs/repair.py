"""Putting a results folder back after an interrupted promotion: the rule, and the journal it reads.

Promoting a finished run's adapter takes four steps, journalled first in
``claims/<run id>.promotion.json`` (the digest of the record before it, whether an earlier adapter
was there, the names of the folders involved):

1. the earlier adapter, if any: ``adapters/<run id>`` -> ``adapters/.earlier-<run id>.<claim>``;
2. the new one: ``adapters/.staging-<run id>.<claim>`` -> ``adapters/<run id>``;
3. the record is written (atomically): **the promotion is committed here**;
4. the earlier adapter is removed, then the journal.

**The record decides.** A journal whose record digest still matches the record on disk was cut off
before step 3: the promotion is undone (the new adapter removed, the earlier one put back), so the
folder is what it was before it. Otherwise the record was written and the promotion is finished (the
earlier adapter removed). A staging folder left behind (of an adapter, or of a training state under
``states/``) is always removed: its run never finished saving, or never got its record. An
``.earlier-<run id>`` without a journal (left by peftbench before claims, which wrote the record last)
is put back, since the record on disk is the earlier run's. Only the sweep that holds a run's claim
repairs it, so a live sweep's work is never touched.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from peftbench.atomic import write_atomically
from peftbench.errors import storage_error
from peftbench.records import ADAPTERS_DIR, record_path

STATES_DIR = "states"  # training states later runs continue (the store's), staged the same way
STAGING_PREFIX = ".staging-"
EARLIER_PREFIX = ".earlier-"
JOURNAL_SUFFIX = ".promotion.json"


def leftover_name(prefix: str, run_id: str, claim: str) -> str:
    """``.staging-<run id>.<claim>``: run ids never hold a dot, so the name parses back."""
    return f"{prefix}{run_id}.{claim}"


def leftover_run(name: str) -> str | None:
    """The run id in a staging or set-aside folder's name (``None``: not such a folder)."""
    for prefix in (STAGING_PREFIX, EARLIER_PREFIX):
        if name.startswith(prefix):
            return name[len(prefix) :].split(".", 1)[0] or None
    return None


def interrupted_runs(out: Path, claims: Path) -> set[str]:
    """Run ids with a leftover staging or set-aside folder, or an unfinished promotion's journal."""
    names = [p.name for folder in _staged_folders(out) for p in folder.iterdir()]
    runs = {leftover_run(name) for name in names} - {None}
    runs |= {p.name[: -len(JOURNAL_SUFFIX)] for p in claims.glob(f"*{JOURNAL_SUFFIX}")}
    return runs


def digest(path: Path) -> str | None:
    """The SHA-256 of a record file (``None``: there is none)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def begin(out: Path, claims: Path, run_id: str, staged: Path, earlier: Path) -> None:
    """Journal a promotion before its first step."""
    entry = {
        "record": digest(record_path(out, run_id)),
        "had_earlier": (out / ADAPTERS_DIR / run_id).exists(),
        "staged": staged.name,
        "earlier": earlier.name,
    }
    content = json.dumps(entry).encode()
    write_atomically(claims / f"{run_id}{JOURNAL_SUFFIX}", lambda file: file.write(content))


def end(claims: Path, run_id: str) -> None:
    """The promotion is over (done or undone): forget its journal."""
    (claims / f"{run_id}{JOURNAL_SUFFIX}").unlink(missing_ok=True)


def repair(out: Path, claims: Path, run_id: str) -> list[str]:
    """Undo or finish ``run_id``'s interrupted promotion and clear its leftovers (the module's rule);
    returns what was done, for people. The caller holds the run's claim."""
    try:
        return _repair(out, claims, run_id)
    except OSError as error:
        raise storage_error(f"the repair of {run_id}'s adapter", out / ADAPTERS_DIR, error) from error


def _repair(out: Path, claims: Path, run_id: str) -> list[str]:
    adapters, done = out / ADAPTERS_DIR, []
    final = adapters / run_id
    journal = _read(claims / f"{run_id}{JOURNAL_SUFFIX}")
    if journal is not None:
        earlier, staged = adapters / str(journal.get("earlier")), adapters / str(journal.get("staged"))
        if digest(record_path(out, run_id)) != journal.get("record"):  # committed: finish it
            shutil.rmtree(earlier, ignore_errors=True)
        elif earlier.is_dir():  # cut off after step 1: the earlier adapter goes back
            remove(final)
            earlier.rename(final)
            done.append(f"put back the adapter of {run_id} (the new one was never recorded)")
        elif not journal.get("had_earlier") and not staged.exists() and final.exists():
            remove(final)  # cut off after step 2, with nothing there before
            done.append(f"removed the adapter of {run_id} (it was never recorded)")
        end(claims, run_id)
    for leftover in sorted(p for folder in _staged_folders(out) for p in folder.iterdir()):
        if leftover_run(leftover.name) != run_id:
            continue
        # No journal: peftbench before claims left it.
        if leftover.name.startswith(EARLIER_PREFIX) and leftover.parent == adapters:
            remove(final)
            leftover.rename(final)
            done.append(f"put back the adapter of {run_id} from {leftover.name}")
        else:
            remove(leftover)
            done.append(f"removed {leftover.name}, an unfinished save")
    return done


def _staged_folders(out: Path) -> list[Path]:
    """The folders runs stage into: adapters, and training states."""
    return [folder for folder in (out / ADAPTERS_DIR, out / STATES_DIR) if folder.is_dir()]


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # none, or unreadable (it is written atomically): the rules without a journal apply
    return data if isinstance(data, dict) else None
