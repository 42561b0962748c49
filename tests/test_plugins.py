import contextlib
import warnings

import pytest

from fake_plugins import BadNamePlugin, DuplicateLoraPlugin, HeadProbePlugin, RaisingPlugin
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.plugins import DEFAULT_PLUGINS, PluginWarning, collect_methods, default_plugin_manager


@contextlib.contextmanager
def registered(plugin, source="tests"):
    manager = default_plugin_manager()
    manager.register_plugin(plugin, name=type(plugin).__name__, source=source)
    try:
        yield manager
    finally:
        manager.unregister(name=type(plugin).__name__)
        manager.sources.pop(type(plugin).__name__, None)


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


def test_fake_plugin_registered_through_a_fixture_is_collected():
    with registered(HeadProbePlugin(), source="peftbench-test 0.0"):
        entry = collect_methods().get("head_probe")
        assert entry.source == "peftbench-test 0.0"
    assert "head_probe" not in collect_methods().names()


def test_two_methods_with_one_name_is_an_error_naming_both_sources():
    with (
        registered(DuplicateLoraPlugin(), source="peftbench-clash 1.2"),
        pytest.raises(PeftbenchError) as error,
    ):
        collect_methods()
    assert "two methods are named 'lora'" in str(error.value)
    assert "built-in" in str(error.value) and "peftbench-clash 1.2" in str(error.value)


def test_invalid_method_name_is_refused():
    with registered(BadNamePlugin()), pytest.raises(PeftbenchError, match="invalid name 'Head-Probe'"):
        collect_methods()


def test_a_raising_hook_warns_and_the_other_methods_still_work():
    with (
        registered(RaisingPlugin(), source="peftbench-broken 0.1"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        registry = collect_methods()
    assert "lora" in registry.names()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert any("peftbench-broken 0.1" in m and "boom while registering" in m for m in messages)
