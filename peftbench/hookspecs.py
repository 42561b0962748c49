"""Pluggy hook specifications: the whole contract between peftbench and a plugin (methods, tasks)."""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("peftbench")
hookimpl = pluggy.HookimplMarker("peftbench")
"""Marks a plugin's implementation of a hook: ``@hookimpl def register_methods(register): ...``."""


@hookspec
def register_methods(register: Callable[..., None]) -> None:
    """Register fine-tuning methods: call ``register(method)`` once per ``Method`` instance."""


@hookspec
def register_tasks(register: Callable[..., None]) -> None:
    """Register kinds of task: call ``register(task)`` once per ``peftbench.tasks.Task`` instance."""
