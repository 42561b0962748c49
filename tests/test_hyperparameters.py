"""Method hyper-parameters: converted from the command line, checked, refused in one line."""

from __future__ import annotations

import pytest

from conftest import write_keyword_csv
from fake_plugins import HeadProbe
from peftbench.cli import main
from peftbench.errors import PeftbenchError
from peftbench.methods.base import TaskInfo
from peftbench.models import load_model, load_tokenizer, resolve_model
from peftbench.plugins import collect_methods
from peftbench.setting_values import parse_hp_overrides


@pytest.fixture
def lora():
    return collect_methods().get("lora").method


def test_cli_strings_are_coerced_to_the_default_types(lora):
    hp = lora.hyperparameters({"r": "16", "learning_rate": "3e-4", "target_modules": "query,value"})
    assert hp["r"] == 16 and isinstance(hp["r"], int)
    assert hp["learning_rate"] == pytest.approx(3e-4)
    assert hp["target_modules"] == ["query", "value"]  # a module list, as peft wants it
    assert hp["lora_alpha"] == 16  # untouched default


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"rank": 4}, ["lora", "'rank'", "known:", "lora_alpha"]),
        ({"r": "four"}, ["lora", "'r'", "must be int"]),
        ({"r": 2.5}, ["'r'", "must be int"]),
        ({"r": 0}, ["'r'=0", "out of range"]),
        ({"learning_rate": -1e-3}, ["'learning_rate'", "out of range"]),
        ({"lora_dropout": 1.5}, ["'lora_dropout'", "out of range"]),
    ],
)
def test_bad_hyperparameters_are_rejected_with_method_and_key(lora, overrides, words):
    with pytest.raises(PeftbenchError) as error:
        lora.hyperparameters(overrides)
    for word in words:
        assert word in str(error.value)


def test_parse_hp_overrides():
    assert parse_hp_overrides(["lora.r=16", "lora.lora_alpha=32", "ia3.learning_rate=0.01"]) == {
        "lora": {"r": "16", "lora_alpha": "32"},
        "ia3": {"learning_rate": "0.01"},
    }
    with pytest.raises(PeftbenchError, match="METHOD.KEY=VALUE"):
        parse_hp_overrides(["r=16"])


def test_reference_rows_take_no_training_hyperparameters():
    baseline = collect_methods().get("baseline").method
    assert baseline.hyperparameters() == {}
    with pytest.raises(PeftbenchError, match="no hyper-parameter 'learning_rate'"):
        baseline.hyperparameters({"learning_rate": 1e-3})


@pytest.fixture(scope="module")
def registry():
    return collect_methods()


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("learning_rate", "NaN", "nan"),
        ("learning_rate", "nan", "nan"),
        ("learning_rate", "Infinity", "inf"),
        ("learning_rate", "inf", "inf"),
        ("learning_rate", "-Infinity", "-inf"),
        ("learning_rate", float("nan"), "nan"),
        ("weight_decay", float("inf"), "inf"),
        ("warmup_ratio", "nan", "nan"),
        ("lora_dropout", "NaN", "nan"),
    ],
)
def test_non_finite_hyperparameters_are_refused_with_method_and_key(registry, key, value, shown):
    with pytest.raises(PeftbenchError) as error:
        registry.get("lora").method.hyperparameters({key: value})
    assert str(error.value) == f"method 'lora': hyper-parameter '{key}'={shown} must be a finite number"


def test_non_finite_hyperparameter_on_the_command_line_is_one_line(tmp_path, capsys):
    data = write_keyword_csv(tmp_path / "d.csv", rows=40)
    out = tmp_path / "runs"
    argv = [
        "run",
        "--model",
        "tiny-gpt2",
        "--dataset",
        str(data),
        "--out",
        str(out),
        "--hp",
        "lora.learning_rate=nan",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "peftbench: error: method 'lora': hyper-parameter 'learning_rate'=nan must be a finite number\n"
    )
    assert not (out / "records").exists()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("query,value", ["query", "value"]),
        (" query , value ", ["query", "value"]),
        ("query", ["query"]),
        ('["query", "value"]', ["query", "value"]),
        (["query"], ["query"]),
        (("query", "key"), ["query", "key"]),
        ("null", None),
        (None, None),
    ],
)
def test_module_lists_from_the_command_line_become_lists_of_names(registry, value, expected):
    for method, key in (
        ("lora", "target_modules"),
        ("ia3", "target_modules"),
        ("ia3", "feedforward_modules"),
    ):
        assert registry.get(method).method.hyperparameters({key: value})[key] == expected


def test_module_lists_through_hp_overrides(registry):
    overrides = parse_hp_overrides(
        ["ia3.target_modules=key,value,output.dense", "ia3.feedforward_modules=output.dense"]
    )
    hp = registry.get("ia3").method.hyperparameters(overrides["ia3"])
    assert hp["target_modules"] == ["key", "value", "output.dense"] and hp["feedforward_modules"] == [
        "output.dense"
    ]
    assert registry.get("lora").method.hyperparameters()["target_modules"] is None  # peft's default


@pytest.mark.parametrize("value", ["", "query,,value", "[query", 5, ["query", 1], {"a": 1}])
def test_bad_module_lists_are_refused(registry, value):
    with pytest.raises(PeftbenchError) as error:
        registry.get("lora").method.hyperparameters({"target_modules": value})
    message = str(error.value)
    assert message.startswith(
        "method 'lora': hyper-parameter 'target_modules' must be module names, e.g. query,value"
    )


def test_comma_separated_target_modules_reach_peft_as_a_list(registry):
    spec = resolve_model("tiny-gpt2")
    tokenizer = load_tokenizer(spec)
    model = load_model(spec, ("bad", "good"), 0, tokenizer.pad_token_id, False)
    lora = registry.get("lora").method
    hp = lora.hyperparameters(parse_hp_overrides(["lora.target_modules=c_attn,c_proj"])["lora"])
    prepared = lora.prepare(model, TaskInfo(2, ("bad", "good"), (1, 1)), hp)
    adapted = {
        name.rsplit(".", 1)[-1] for name, module in prepared.named_modules() if hasattr(module, "lora_A")
    }
    assert adapted == {"c_attn", "c_proj"}


def _method(name, **attributes):
    """A method declared the short way (``defaults``/``bounds``), as a small plugin would."""
    body = {"name": name, "description": "x", "prepare": None, "save": None, "load": None, **attributes}
    return type(name, (HeadProbe,), body)()


def test_list_defaults_take_their_items_type_from_the_command_line():
    method = _method("layers_demo", defaults={"layers": [1, 2]})
    assert method.hyperparameters({"layers": "3,4"})["layers"] == [3, 4]
    assert method.hyperparameters({"layers": "[5, 6]"})["layers"] == [5, 6]
    with pytest.raises(PeftbenchError, match="hyper-parameter 'layers' must be list, got"):
        method.hyperparameters({"layers": "a,b"})


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        (
            {"defaults": {"r": 0}, "bounds": {"r": (1, None)}},
            "method 'demo': hyper-parameter 'r'=0 is out of range",
        ),
        (
            {"defaults": {"x": None}, "bounds": {"x": (1, None)}},
            "gives bounds for 'x', whose default None is not",
        ),
        (
            {"defaults": {"r": 1}, "bounds": {"rr": (1, None)}},
            "gives bounds for 'rr', which is not in its defaults",
        ),
    ],
)
def test_a_method_whose_own_declaration_is_wrong_is_one_line(attributes, words):
    with pytest.raises(PeftbenchError, match=words):
        _method("demo", **attributes).hyperparameters()


def test_a_choice_hyper_parameter_names_its_choices_in_help_and_refusals(capsys):
    road = collect_methods().get("road").method
    assert road.hyperparameters({"variant": "road_2"})["variant"] == "road_2"
    with pytest.raises(PeftbenchError) as error:
        road.hyperparameters({"variant": "road_3"})
    assert str(error.value) == (
        "method 'road': hyper-parameter 'variant' must be one of road_1, road_2, road_4, got 'road_3'"
    )
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert "variant         parameters per pair of outputs" in listed
    assert "(one of road_1, road_2, road_4)" in listed and "Literal" not in listed
