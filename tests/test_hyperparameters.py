import pytest

from peftbench.errors import PeftbenchError
from peftbench.plugins import collect_methods
from peftbench.sweep import parse_hp_overrides


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
