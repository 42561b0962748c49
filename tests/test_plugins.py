"""The plugin manager: built-ins and entry points collected the same way, bad plugins refused or skipped."""

from __future__ import annotations

import warnings

import pytest

from conftest import registered, run_cli
from fake_plugins import (
    BadNamePlugin,
    DuplicateLoraPlugin,
    HeadProbe,
    HeadProbePlugin,
    MethodsPlugin,
    NeedsPackagePlugin,
    ProbePlugin,
    RaisingPlugin,
    SwallowingPlugin,
)
from peftbench.errors import PeftbenchError, UnknownNameError
from peftbench.methods.hyperparameters import Hyperparameters
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
    assert {name for name in DEFAULT_PLUGINS if ".methods." in name} <= implementers
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


def refusal(method) -> str:
    """The one-line error that registering ``method`` gives."""
    manager = PluginManager()
    manager.register_plugin(ProbePlugin(), "probe_ep", "peftbench-probe 0.1")  # no methods of its own
    manager.register_plugin(MethodsPlugin(method), "broken_ep", "peftbench-broken 2.0")
    with pytest.raises(PeftbenchError) as error:
        collect_methods(manager)
    message = str(error.value)
    assert "\n" not in message and "peftbench-broken 2.0" in message and "'broken_ep'" in message
    return message


def variant(**attributes):
    return type("Variant", (HeadProbe,), {"name": "variant", **attributes})()


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        (
            {"prepare": lambda self, model, task: model},
            "its prepare(model, task) cannot be called as prepare(model, task, hp)",
        ),
        ({"save": lambda self, model: None}, "its save(model) cannot be called as save(model, directory)"),
        (
            {"load": lambda self, model, directory: model},
            "cannot be called as load(base_model, directory, task, hp)",
        ),
        ({"extra_loss": lambda self: 0.0}, "its extra_loss() cannot be called as extra_loss(model)"),
        ({"after_step": lambda self, model: None}, "cannot be called as after_step(model, step)"),
        ({"optimizer": lambda self, model: []}, "its optimizer(model) cannot be called as optimizer(model, "),
        ({"report": lambda self: {}}, "its report() cannot be called as report(model)"),
        ({"unsupported": {"gtp2": "typo"}}, "its unsupported names family 'gtp2'; known families: gpt2"),
        ({"unsupported": {"gpt2": " "}}, "its unsupported['gpt2'] must say why in a sentence"),
        ({"unsupported": ["gpt2"]}, "its unsupported must be a dict of family -> reason, got list"),
        ({"search_space_source": 3}, "its search_space_source must be a sentence saying where"),
        ({"description": ""}, "it has no description"),
        ({"role": "oracle"}, "its role 'oracle' is unknown: use one of method, baseline, reference"),
        (
            {"defaults": {"r": 0}, "bounds": {"r": (1, None)}},
            "hyper-parameter 'r'=0 is out of range [1, inf]",
        ),
        ({"search_space": {"learning_rate": [-1.0]}}, "hyper-parameter 'learning_rate'=-1.0 is out of range"),
        ({"search_space": {"learning_rate": 0.1}}, "its hyper-parameters cannot be resolved (TypeError: "),
        (
            {"Hyperparameters": dict},
            "its Hyperparameters (<class 'dict'>) must derive from TrainingHyperparameters",
        ),
        (
            {"Hyperparameters": Hyperparameters},
            "it trains, but its Hyperparameters lack learning_rate, weight_decay",
        ),
        (
            {"extra_loss": None},
            "its extra_loss is not a method the harness can call: def extra_loss(self, model)",
        ),
    ],
)
def test_a_method_the_harness_could_not_run_is_refused_when_it_registers(attributes, words):
    message = refusal(variant(**attributes))
    assert message.startswith(
        "plugin peftbench-broken 2.0 registered method 'variant', which peftbench cannot run: "
    )
    assert words in message


def test_a_peft_method_whose_peft_config_takes_no_hyperparameters_is_refused():
    from peftbench import PeftMethod

    class NoKeywords(PeftMethod):
        name = "variant"
        description = "peft_config without **hp."

        def peft_config(self, model, task):
            return None

    assert "its peft_config(model, task) cannot be called as peft_config(model, task, **hp)" in refusal(
        NoKeywords()
    )


def test_a_peft_config_that_names_its_hyper_parameters_is_accepted():
    from peftbench import PeftMethod

    class Named(PeftMethod):
        name = "named"
        description = "peft_config naming the hyper-parameters it uses."
        defaults = {"r": 4}

        def peft_config(self, model, task, r, learning_rate, **_):
            return None

    manager = PluginManager()
    manager.register_plugin(MethodsPlugin(Named()), "named_ep", "peftbench-named 1.0")
    assert collect_methods(manager).names() == ["named"]


def test_hooks_that_a_method_does_not_define_are_neither_checked_nor_called():
    probe = HeadProbe()
    assert not any(probe.defines(hook) for hook in ("extra_loss", "after_step", "optimizer", "report"))
    assert collect_methods().get("lora").method.defines("after_step") is False


WRONG_PREPARE = """
from peftbench import TrainableParametersMethod, hookimpl


class WrongPrepare(TrainableParametersMethod):
    name = "wrong_prepare"
    description = "prepare() written without the hyper-parameters the harness passes."

    def prepare(self, model, task):
        return model


@hookimpl
def register_methods(register):
    register(WrongPrepare())
"""


def test_a_wrong_prepare_is_refused_at_peftbench_methods_naming_the_plugin(tmp_path):
    from test_entry_points import install_fake_distribution

    install_fake_distribution(tmp_path / "site", "peftbench-wrong", "0.3", "wrong", "pb_wrong", WRONG_PREPARE)
    listed = run_cli("methods", env={"PYTHONPATH": str(tmp_path / "site")})
    assert listed.returncode == 2 and "Traceback" not in listed.stderr
    assert listed.stderr == (
        "peftbench: error: plugin peftbench-wrong 0.3 registered method 'wrong_prepare', which peftbench "
        "cannot run: its prepare(model, task) cannot be called as prepare(model, task, hp); or switch "
        "entry point 'wrong' off: PEFTBENCH_PLUGINS lists the entry points to load (comma-separated; "
        "set but empty loads none), so set it without 'wrong'\n"
    )
