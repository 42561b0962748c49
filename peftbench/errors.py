"""User-facing errors.

Anything a person can fix (a typo in a method name, a missing column, a bad hyper-parameter)
raises :class:`PeftbenchError` with a one-line message saying what was wrong and what to do.
The CLI prints that line instead of a traceback.
"""

from __future__ import annotations


class PeftbenchError(Exception):
    """An error caused by user input or configuration, with a message meant for people."""


class UnknownNameError(PeftbenchError, KeyError):
    """A name (method, model alias, dataset) that is not known; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""
