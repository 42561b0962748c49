"""The plugin manager: built-in methods and third-party entry points, collected the same way.

Built-ins are listed in ``DEFAULT_PLUGINS`` and registered exactly as an installed package's
``peftbench`` entry point is. A plugin that fails to import, or whose hook raises, is reported
as a warning naming it, and every other method keeps working.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

import pluggy

from peftbench import hookspecs
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.methods.base import Method

ENTRY_POINT_GROUP = "peftbench"
DEFAULT_PLUGINS = (
    "peftbench.methods.lora",
    "peftbench.methods.ia3",
    "peftbench.methods.prefix_tuning",
    "peftbench.methods.reference",
)
#: Comma-separated entry-point names to load; set but empty loads no third-party plugin.
PLUGINS_ENV = "PEFTBENCH_PLUGINS"
BUILTIN_SOURCE = "built-in"
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginWarning(UserWarning):
    """A plugin could not be loaded or registered; the other methods still work."""


@dataclass(frozen=True)
class RegisteredMethod:
    method: Method
    source: str  # "built-in", or "<distribution> <version>" for an entry point


class MethodRegistry:
    """Every method known to this process, by name, with where it came from."""

    def __init__(self, entries: dict[str, RegisteredMethod]) -> None:
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[RegisteredMethod]:
        return list(self._entries.values())

    def get(self, name: str) -> RegisteredMethod:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries))
            raise UnknownNameError(f"unknown method '{name}'; known methods: {known}")
        return self._entries[name]


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from (shown by ``peftbench methods``)."""

    def __init__(self) -> None:
        super().__init__("peftbench")
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, str] = {}

    def register_plugin(self, plugin: object, name: str, source: str) -> None:
        self.register(plugin, name=name)
        self.sources[name] = source


def get_plugin_manager() -> PluginManager:
    """A fresh manager with the built-ins and every allowed ``peftbench`` entry point registered."""
    manager = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        manager.register_plugin(importlib.import_module(module_name), module_name, BUILTIN_SOURCE)
    _load_entry_points(manager)
    return manager


def _load_entry_points(manager: PluginManager) -> None:
    allowed = os.environ.get(PLUGINS_ENV)
    allowed_names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if allowed_names is not None and entry_point.name not in allowed_names:
            continue
        if manager.get_plugin(entry_point.name) is not None:
            continue
        try:
            manager.register_plugin(entry_point.load(), entry_point.name, _describe(entry_point))
        except Exception as error:  # a broken plugin must not take the others down
            warnings.warn(
                f"peftbench plugin '{entry_point.name}' from {_describe(entry_point)} failed to load "
                f"and was skipped: {type(error).__name__}: {error}",
                PluginWarning,
                stacklevel=2,
            )


def _describe(entry_point) -> str:
    dist = getattr(entry_point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else f"entry point {entry_point.value}"


@functools.cache
def default_plugin_manager() -> PluginManager:
    """The process-wide manager (tests register fake plugins on it and unregister them after)."""
    return get_plugin_manager()


def collect_methods(manager: PluginManager | None = None) -> MethodRegistry:
    """Call every plugin's ``register_methods`` hook and validate what it registers."""
    manager = manager or default_plugin_manager()
    entries: dict[str, RegisteredMethod] = {}
    for impl in manager.hook.register_methods.get_hookimpls():
        source = manager.sources.get(impl.plugin_name, impl.plugin_name)

        def register(method: Method, _source: str = source) -> None:
            _add(entries, method, _source)

        try:
            impl.function(register=register)
        except PeftbenchError:
            raise
        except Exception as error:
            warnings.warn(
                f"peftbench plugin '{impl.plugin_name}' ({source}) raised in register_methods and was "
                f"skipped: {type(error).__name__}: {error}",
                PluginWarning,
                stacklevel=2,
            )
    return MethodRegistry(entries)


def _add(entries: dict[str, RegisteredMethod], method: Method, source: str) -> None:
    if not isinstance(method, Method):
        raise PeftbenchError(
            f"plugin {source} registered {method!r}, which is not a peftbench Method instance"
        )
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise PeftbenchError(
            f"plugin {source} registered a method with invalid name {name!r}: "
            "use a lower-case identifier such as 'my_method'"
        )
    if name in entries:
        raise PeftbenchError(
            f"two methods are named '{name}': one from {entries[name].source}, one from {source}; "
            f"uninstall one or limit plugins with {PLUGINS_ENV}"
        )
    entries[name] = RegisteredMethod(method, source)
