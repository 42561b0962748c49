"""peftbench: which parameter-efficient fine-tuning method should I use, and what does it cost?

The public API: ``run`` a sweep, read a ``Leaderboard``, and write method plugins with
``hookimpl``, ``Method`` and ``PeftMethod``.
"""

from __future__ import annotations

__version__ = "0.2.0"

from peftbench.api import run  # noqa: E402
from peftbench.errors import PeftbenchError, UnknownNameError  # noqa: E402
from peftbench.hookspecs import hookimpl  # noqa: E402
from peftbench.leaderboard import Leaderboard  # noqa: E402
from peftbench.methods.base import Method, PeftMethod, TaskInfo  # noqa: E402
from peftbench.plugins import collect_methods  # noqa: E402
from peftbench.records import RunRecord, read_records  # noqa: E402
from peftbench.train import TrainConfig  # noqa: E402

__all__ = [
    "Leaderboard",
    "Method",
    "PeftMethod",
    "PeftbenchError",
    "RunRecord",
    "TaskInfo",
    "TrainConfig",
    "UnknownNameError",
    "collect_methods",
    "hookimpl",
    "read_records",
    "run",
]
