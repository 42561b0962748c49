"""User-facing errors.

Anything a person can fix (a typo in a method name, a missing column, a bad hyper-parameter)
raises :class:`PeftbenchError` with a one-line message saying what was wrong and what to do.
The CLI prints that line instead of a traceback.
"""

from __future__ import annotations

import errno


class PeftbenchError(Exception):
    """An error caused by user input or configuration, with a message meant for people."""


class UnknownNameError(PeftbenchError, KeyError):
    """A name (method, model alias, dataset) that is not known; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


#: Why writing into a results folder fails for a reason no rerun of the run would fix: a full disk
#: or quota, a read-only mount, a permission taken away.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


class StorageError(PeftbenchError):
    """The results folder could not be written (full disk, read-only, permission): the sweep stops,
    keeping every result already there; the next start resumes once the folder can take writes."""


def is_storage_error(error: BaseException) -> bool:
    """Whether ``error`` is the results folder refusing a write (see ``STORAGE_ERRNOS``)."""
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


def storage_error(what: str, where: object, error: OSError) -> StorageError:
    """The one line a sweep stops with: what could not be written where, and why."""
    return StorageError(
        f"could not write {what} into {where}: {error.strerror or error}; every result already there "
        "is kept, and the next start resumes from it once the folder can take writes again"
    )
