"""The plugin manager: built-ins and entry points collected the same way, bad plugins refused or skipped."""

from __future__ import annotations

import warnings

import pytest

from conftest import registered
from fake_plugins import (
    BadNamePlugin,
    DuplicateLoraPlugin,
    HeadProbePlugin,
    NeedsPackagePlugin,
    ProbePlugin,
    RaisingPlugin,
    SwallowingPlugin,
)
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.plugins import (
    DEFAULT_PLUGINS,
    PLUGINS_ENV,
    PluginManager,
    PluginWarning,
    collect_methods,
    default_plugin_manager,
)


def _plugin_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def test_builtins_arrive_through_the_register_methods_hook():
    manager = default_plugin_manager()
    implementers = {impl.plugin_name for impl in manager.hook.register_methods.get_hookimpls()}
    assert set(DEFAULT_PLUGINS) <= implementers
    registry = collect_methods()
    assert registry.names()[:3] == ["lora", "ia3", "prefix_tuning"]
    for name in ("lora", "ia3", "prefix_tuning", "baseline", "majority"):
        assert registry.get(name).source == "built-in"
    assert registry.get("baseline").method.role == "baseline"


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownNameError) as error:
        collect_methods().get("lorra")
    message = str(error.value)
    assert "unknown method 'lorra'" in message
    known = message.split("known methods: ")[1].split(", ")
    assert known == sorted(known) and {"ia3", "lora", "majority", "prefix_tuning", "baseline"} <= set(known)


def test_a_fake_plugin_registered_for_a_while_is_collected_then_gone():
    with registered(HeadProbePlugin(), source="peftbench-test 0.0"):
        entry = collect_methods().get("head_probe")
        assert entry.source == "peftbench-test 0.0"
    assert "head_probe" not in collect_methods().names()
    assert HeadProbePlugin.__name__ not in default_plugin_manager().sources


def test_two_methods_with_one_name_is_an_error_naming_both_sources(register_plugin):
    register_plugin(DuplicateLoraPlugin(), source="peftbench-clash 1.2")
    with pytest.raises(PeftbenchError) as error:
        collect_methods()
    assert "two methods are named 'lora'" in str(error.value)
    assert "built-in" in str(error.value) and "peftbench-clash 1.2" in str(error.value)


def test_invalid_method_name_is_refused(register_plugin):
    register_plugin(BadNamePlugin())
    with pytest.raises(PeftbenchError, match="invalid name 'Head-Probe'"):
        collect_methods()


def test_a_raising_hook_warns_and_the_other_methods_still_work(register_plugin):
    register_plugin(RaisingPlugin(), source="peftbench-broken 0.1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = collect_methods()
    assert "lora" in registry.names()
    messages = _plugin_warnings(caught)
    assert any("peftbench-broken 0.1" in m and "boom while registering" in m for m in messages)


def test_a_peftbench_error_from_a_plugins_own_hook_is_a_warning_and_nothing_else_breaks(register_plugin):
    register_plugin(NeedsPackagePlugin(), "peftbench-needs-x 0.3", name="needs_x")
    with warnings.catch_warnings(record=True) as caught:
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


def test_an_invalid_name_is_an_error_saying_how_to_switch_the_entry_point_off(register_plugin):
    register_plugin(ProbePlugin("Bad-Name"), "peftbench-bad 1.0", name="bad_names")
    with pytest.raises(PeftbenchError) as error:
        collect_methods()
    message = str(error.value)
    assert "invalid name 'Bad-Name'" in message and "peftbench-bad 1.0" in message
    assert PLUGINS_ENV in message and "'bad_names'" in message


def test_a_duplicate_name_is_an_error_naming_both_and_the_entry_point_to_switch_off(register_plugin):
    register_plugin(ProbePlugin("lora"), "peftbench-clash 1.2", name="clash")
    with pytest.raises(PeftbenchError) as error:
        collect_methods()
    message = str(error.value)
    assert "two methods are named 'lora'" in message
    assert "built-in" in message and "peftbench-clash 1.2" in message
    assert PLUGINS_ENV in message and "'clash'" in message
    assert "peftbench.methods.lora" not in message  # built-ins cannot be switched off: not offered


def test_a_duplicate_between_two_entry_points_offers_either():
    manager = PluginManager()  # a manager of its own: nothing to clean up
    manager.register_plugin(ProbePlugin("same"), "first_ep", "dist-one 1.0")
    manager.register_plugin(ProbePlugin("same"), "second_ep", "dist-two 2.0")
    with pytest.raises(PeftbenchError) as error:
        collect_methods(manager)
    message = str(error.value)
    assert "dist-one 1.0" in message and "dist-two 2.0" in message
    assert "'first_ep'" in message and "'second_ep'" in message


def test_a_registry_refusal_wrapped_by_the_plugin_is_still_an_error(register_plugin):
    register_plugin(SwallowingPlugin(), "peftbench-swallow 0.1", name="swallow")
    with pytest.raises(PeftbenchError, match="two methods are named 'lora'"):
        collect_methods()
