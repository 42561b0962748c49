"""Regression tests: a plugin's own PeftbenchError is a warning, Markdown text keeps apostrophes,
a method named ``index`` gets its own page."""

from __future__ import annotations

import contextlib
import warnings

import pytest

from fake_plugins import HeadProbe
from peftbench import PeftbenchError, hookimpl
from peftbench.plugins import (
    PLUGINS_ENV,
    MethodRegistry,
    PluginManager,
    PluginWarning,
    RegisteredMethod,
    collect_methods,
    default_plugin_manager,
)
from peftbench.site import method_pages
from peftbench.site.markup import md_text, method_slug


@contextlib.contextmanager
def registered(plugin, name, source):
    manager = default_plugin_manager()
    manager.register_plugin(plugin, name=name, source=source)
    try:
        yield manager
    finally:
        manager.unregister(name=name)
        manager.sources.pop(name, None)


def probe(name: str) -> HeadProbe:
    method = HeadProbe()
    method.name = name
    return method


class NeedsPackagePlugin:
    """A plugin whose own hook code refuses with a PeftbenchError (after registering one method)."""

    @hookimpl
    def register_methods(self, register):
        register(probe("half_registered"))
        raise PeftbenchError("peftbench-needs-x needs package x: pip install x")


class BadNamePlugin:
    @hookimpl
    def register_methods(self, register):
        register(probe("Bad-Name"))


class DuplicateLoraPlugin:
    @hookimpl
    def register_methods(self, register):
        register(probe("lora"))


class SwallowingPlugin:
    """Catches the registry's refusal and raises its own error instead: still a refusal."""

    @hookimpl
    def register_methods(self, register):
        try:
            register(probe("lora"))
        except Exception as error:
            raise RuntimeError("wrapped") from error


class TwoPlugins:
    def __init__(self, name):
        self.name = name

    @hookimpl
    def register_methods(self, register):
        register(probe(self.name))


def _plugin_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def test_a_peftbench_error_from_a_plugins_own_hook_is_a_warning_and_nothing_else_breaks():
    with (
        registered(NeedsPackagePlugin(), "needs_x", "peftbench-needs-x 0.3"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        registry = collect_methods()
    names = registry.names()
    assert {"lora", "ia3", "prefix_tuning", "baseline"} <= set(names)
    assert "half_registered" not in names  # a skipped plugin leaves nothing half-registered
    messages = _plugin_warnings(caught)
    assert any(
        "'needs_x'" in m and "peftbench-needs-x 0.3" in m and "needs package x" in m and "skipped" in m
        for m in messages
    ), messages


def test_an_invalid_name_is_an_error_saying_how_to_switch_the_entry_point_off():
    with (
        registered(BadNamePlugin(), "bad_names", "peftbench-bad 1.0"),
        pytest.raises(PeftbenchError) as error,
    ):
        collect_methods()
    message = str(error.value)
    assert "invalid name 'Bad-Name'" in message and "peftbench-bad 1.0" in message
    assert PLUGINS_ENV in message and "'bad_names'" in message


def test_a_duplicate_name_is_an_error_naming_both_and_the_entry_point_to_switch_off():
    with (
        registered(DuplicateLoraPlugin(), "clash", "peftbench-clash 1.2"),
        pytest.raises(PeftbenchError) as error,
    ):
        collect_methods()
    message = str(error.value)
    assert "two methods are named 'lora'" in message
    assert "built-in" in message and "peftbench-clash 1.2" in message
    assert PLUGINS_ENV in message and "'clash'" in message
    assert "peftbench.methods.lora" not in message  # built-ins cannot be switched off: not offered


def test_a_duplicate_between_two_entry_points_offers_either():
    manager = PluginManager()
    manager.register_plugin(TwoPlugins("same"), "first_ep", "dist-one 1.0")
    manager.register_plugin(TwoPlugins("same"), "second_ep", "dist-two 2.0")
    with pytest.raises(PeftbenchError) as error:
        collect_methods(manager)
    message = str(error.value)
    assert "dist-one 1.0" in message and "dist-two 2.0" in message
    assert "'first_ep'" in message and "'second_ep'" in message


def test_a_registry_refusal_wrapped_by_the_plugin_is_still_an_error():
    with (
        registered(SwallowingPlugin(), "swallow", "peftbench-swallow 0.1"),
        pytest.raises(PeftbenchError, match="two methods are named 'lora'"),
    ):
        collect_methods()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the model's head", "the model's head"),
        ('the model\'s "head" <script>', 'the model\'s "head" &lt;script&gt;'),
        ("a & b &amp; c", "a &amp; b &amp;amp; c"),
        ("# [x](javascript:y) | d", "&#35; &#91;x&#93;(javascript&#58;y) &#124; d"),
        ("*a* _b_ `c`", "&#42;a&#42; &#95;b&#95; &#96;c&#96;"),
        ("two\nlines", "two lines"),
    ],
)  # fmt: skip
def test_md_text_escapes_once(text, expected):
    assert md_text(text) == expected


def test_md_text_never_mangles_an_apostrophe_into_an_entity():
    escaped = md_text("the model's head")
    assert "&#x27;" not in escaped and "&#35;" not in escaped and "&#39;" not in escaped


def test_a_method_named_index_gets_its_own_page_and_the_index_links_to_it():
    assert method_slug("index") == "index-method" and method_slug("lora") == "lora"
    registry = MethodRegistry(
        {
            "index": RegisteredMethod(probe("index"), "peftbench-index 0.1"),
            "lora": RegisteredMethod(probe("lora"), "built-in"),
        }
    )
    out = method_pages.pages(registry, [])
    assert set(out) == {"methods/index.md", "methods/index-method.md", "methods/lora.md"}
    assert out["methods/index.md"].startswith("# Methods\n")
    assert "[index](index-method.md)" in out["methods/index.md"]
    assert "[lora](lora.md)" in out["methods/index.md"]
    assert out["methods/index-method.md"].startswith("# index\n")
