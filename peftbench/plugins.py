"""The plugin manager: built-in methods and tasks and third-party entry points, collected the same way.

Built-ins are listed in ``DEFAULT_PLUGINS`` and registered exactly as an installed package's
``peftbench`` entry point is. A plugin that fails to import, or whose hook raises, is reported
as a warning naming it, and every other method keeps working.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy

from peftbench import hookspecs
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.methods.base import ROLES, Method, PeftMethod
from peftbench.methods.hyperparameters import Hyperparameters, TrainingHyperparameters
from peftbench.methods.support import declaration_problem
from peftbench.validation import type_name

ENTRY_POINT_GROUP = "peftbench"
DEFAULT_PLUGINS = (
    "peftbench.methods.lora",
    "peftbench.methods.ia3",
    "peftbench.methods.prefix_tuning",
    "peftbench.methods.reference",
    "peftbench.tasks.classification",
    "peftbench.tasks.regression",
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


class _RegistryError(PeftbenchError):
    """A registration the registry itself refuses (invalid or duplicate name, not a Method).

    Raised only by ``_add``, so ``collect_methods`` can tell it apart from a ``PeftbenchError``
    that a plugin's own hook code raises (say, "needs package X"): the first is a configuration
    error that stops everything, the second skips that plugin with a warning.
    """


def collect_methods(manager: PluginManager | None = None) -> MethodRegistry:
    """Call every plugin's ``register_methods`` hook and validate what it registers.

    A hook that raises (anything but the registry's own refusals) is skipped with a warning, and
    none of the methods it registered before raising is kept.
    """
    found = collect_registrations(manager, "register_methods", "method", Method, _cannot_run)
    return MethodRegistry(
        {name: RegisteredMethod(method, source) for name, (method, source) in found.items()}
    )


def collect_registrations(
    manager: PluginManager | None,
    hook: str,
    what: str,
    kind: type,
    problem: Callable[[Any], str | None],
) -> dict[str, tuple[Any, str]]:
    """Call every implementation of ``hook`` (``register_methods``, ``register_tasks``) with a
    ``register`` callback; returns name -> (what it registered, its source), every one checked:
    an instance of ``kind``, a valid and unique name, and nothing ``problem`` objects to.

    A hook that raises (anything but the registry's own refusals) is skipped with a warning, and
    nothing it registered before raising is kept.
    """
    manager = manager or default_plugin_manager()
    entries: dict[str, tuple[Any, str]] = {}
    plugin_names: dict[str, str] = {}  # name -> the plugin (entry point) that registered it
    for impl in getattr(manager.hook, hook).get_hookimpls():
        plugin = impl.plugin_name
        source = manager.sources.get(plugin, plugin)
        pending: dict[str, tuple[Any, str]] = {}
        refused: list[_RegistryError] = []  # kept even if the plugin's code swallows or wraps it

        def register(item: Any, _source=source, _plugin=plugin, _pending=pending, _refused=refused) -> None:
            try:
                _add(
                    _Registration(what, kind, problem, entries, _pending, plugin_names),
                    item,
                    _source,
                    _plugin,
                )
            except _RegistryError as error:
                _refused.append(error)
                raise

        try:
            impl.function(register=register)
        except Exception as error:
            if refused:
                raise refused[0] from None
            # The plugin's own code raised (a PeftbenchError included): skip it, keep the others.
            warnings.warn(
                f"peftbench plugin '{plugin}' ({source}) raised in {hook} and was "
                f"skipped: {type(error).__name__}: {error}",
                PluginWarning,
                stacklevel=2,
            )
            continue
        if refused:
            raise refused[0]
        entries.update(pending)
        for name in pending:
            plugin_names[name] = plugin
    return entries


def _switch_off_hint(*origins: tuple[str, str]) -> str:
    """How to stop loading the entry points among ``(source, plugin)`` pairs (built-ins always load)."""
    plugins = list(dict.fromkeys(plugin for source, plugin in origins if source != BUILTIN_SOURCE))
    if not plugins:
        return ""
    which = " or ".join(f"'{plugin}'" for plugin in plugins)
    return (
        f"; or switch entry point {which} off: {PLUGINS_ENV} lists the entry points to load "
        f"(comma-separated; set but empty loads none), so set it without {which}"
    )


@dataclass(frozen=True)
class _Registration:
    """What one registry collects and checks, and what it has collected so far."""

    what: str  # "method", "task"
    kind: type  # what every registered item must be an instance of
    problem: Callable[[Any], str | None]
    entries: dict[str, tuple[Any, str]]  # accepted from earlier plugins
    pending: dict[str, tuple[Any, str]]  # from the plugin being collected
    plugin_names: dict[str, str]


def _add(registration: _Registration, item: Any, source: str, plugin: str) -> None:
    what, entries, pending = registration.what, registration.entries, registration.pending
    article = "an" if what[0] in "aeiou" else "a"
    if not isinstance(item, registration.kind):
        raise _RegistryError(
            f"plugin {source} registered {item!r}, which is not a peftbench {registration.kind.__name__} "
            f"instance{_switch_off_hint((source, plugin))}"
        )
    name = getattr(item, "name", None)
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise _RegistryError(
            f"plugin {source} registered {article} {what} with invalid name {name!r}: "
            f"use a lower-case identifier such as 'my_{what}'{_switch_off_hint((source, plugin))}"
        )
    if name in entries or name in pending:
        first = entries[name][1] if name in entries else source
        first_plugin = registration.plugin_names.get(name, plugin)
        raise _RegistryError(
            f"two {what}s are named '{name}': one from {first}, one from {source}; "
            f"uninstall one{_switch_off_hint((first, first_plugin), (source, plugin))}"
        )
    problem = registration.problem(item)
    if problem:
        raise _RegistryError(
            f"plugin {source} registered {what} '{name}', which peftbench cannot run: {problem}"
            f"{_switch_off_hint((source, plugin))}"
        )
    pending[name] = (item, source)


#: How the harness calls each method of a ``Method``: the positional arguments it passes.
CALLS = {
    "prepare": ("model", "task", "hp"),
    "save": ("model", "directory"),
    "load": ("base_model", "directory", "task", "hp"),
    "extra_loss": ("model",),
    "after_step": ("model", "step"),
    "optimizer": ("model", "hp"),
    "report": ("model",),
    "merge": ("model",),
    "applies_to": ("task",),
}
#: Hooks with a default: checked only where a method defines them.
OPTIONAL = ("extra_loss", "after_step", "optimizer", "report")


def _cannot_run(method: Method) -> str | None:
    """What would make the harness fail on ``method`` mid-sweep, said now; ``None`` if nothing."""
    description = getattr(method, "description", None)
    if not isinstance(description, str) or not description.strip():
        return "it has no description: set description = 'one sentence on what it trains'"
    if method.role not in ROLES:
        return f"its role {method.role!r} is unknown: use one of {', '.join(ROLES)}"
    if not isinstance(method.trains_on_features, bool):
        return f"its trains_on_features {method.trains_on_features!r} must be True or False"
    if method.trains_on_features and not method.trains:
        return "it declares trains_on_features but trains nothing (trains = False): drop one of them"
    unsupported = declaration_problem(method.unsupported)
    if unsupported:
        return unsupported
    if not isinstance(method.search_space_source, str):
        return "its search_space_source must be a sentence saying where the search space comes from"
    try:
        hp = _hyperparameters(method)
    except PeftbenchError as error:
        return str(error)
    except Exception as error:  # a validator or search space that breaks, not a user's mistake
        return f"its hyper-parameters cannot be resolved ({type(error).__name__}: {error})"
    calls = {name: (args, {}) for name, args in CALLS.items() if name not in OPTIONAL or method.defines(name)}
    if isinstance(method, PeftMethod):
        calls["peft_config"] = (("model", "task"), hp)  # called as peft_config(model, task, **hp)
    for name, (args, keywords) in calls.items():
        try:
            signature = inspect.signature(getattr(method, name, None))
        except (TypeError, ValueError):
            return f"its {name} is not a method the harness can call: def {name}(self, {', '.join(args)})"
        try:
            signature.bind(*args, **keywords)
        except TypeError:
            shown = ", ".join([*args, "**hp" if keywords else ""]).rstrip(", ")
            return f"its {name}{signature} cannot be called as {name}({shown})"
    return None


def _hyperparameters(method: Method) -> dict:
    """The method's resolved defaults, its search space checked; raises saying what is wrong."""
    model = method.hyperparameter_model()
    if not (isinstance(model, type) and issubclass(model, Hyperparameters)):
        raise PeftbenchError(f"its Hyperparameters ({model!r}) must derive from TrainingHyperparameters")
    missing = [key for key in TrainingHyperparameters.model_fields if key not in model.model_fields]
    if method.trains and missing:
        raise PeftbenchError(
            f"it trains, but its Hyperparameters lack {', '.join(missing)}: derive them from "
            "TrainingHyperparameters"
        )
    hp = method.hyperparameters()
    method.tuning_grid()
    key = method.size_key
    if key is not None and (key not in model.model_fields or type_name(model.model_fields[key]) != "int"):
        raise PeftbenchError(
            f"its size_key {key!r} is not one of its whole-number hyper-parameters "
            f"({', '.join(k for k, f in model.model_fields.items() if type_name(f) == 'int') or 'none'})"
        )
    return hp
