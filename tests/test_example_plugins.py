"""The example plugin packages under plugins/, installed by scripts/setup.sh, found by entry point."""

import json

import pytest
import torch

import peftbench
from conftest import keyword_folder
from peftbench.batching import tokenize_split
from peftbench.data import DatasetSpec, load_splits
from peftbench.methods.base import TaskInfo, TrainingPlan
from peftbench.methods.support import model_family
from peftbench.models import load_model, load_tokenizer, resolve_model
from peftbench.plugins import collect_methods
from peftbench.runs.sizing import size_method
from peftbench.settings import TrainConfig
from peftbench.train import StepHooks, train

BITFIT = "peftbench-bitfit 0.1.0"
EXTRAS = "peftbench-peft-extras 0.1.0"
# Each extras method and the hyper-parameter --budget sizes it by (None: its size is fixed).
SIZE_KEYS = {
    "loha": "r", "lokr": "r", "dora": "r", "rslora": "r", "pissa": "r", "olora": "r", "lora_plus": "r",
    "lora_fa": "r", "oft": "block_size", "boft": "block_size", "hra": "r", "road": None, "vera": "r",
    "vblora": "num_vectors", "randlora": None, "fourierft": "n_frequency", "c3a": None, "shira": "r",
    "delora": "r", "gralora": "r", "hira": "r", "miss": "r", "ln_tuning": None,
    "prompt_tuning": "num_virtual_tokens", "p_tuning": "encoder_hidden_size", "adalora": "init_r",
}  # fmt: skip
EXTRA_METHODS = list(SIZE_KEYS)
PADDING = "pools the last non-padding token"  # soft prompts pass inputs_embeds only: a pad is pooled
# One of each way a method is built: own parameters (bitfit), training hooks and own numbers
# (adalora), base weights changed and converted on save (pissa), parameter groups (lora_plus,
# vblora, fourierft), its own optimizer (lora_fa), soft prompts (prompt_tuning, not on GPT-2).
REPRESENTATIVE = [
    "bitfit", "adalora", "pissa", "lora_plus", "lora_fa", "vblora", "fourierft", "prompt_tuning",
]  # fmt: skip


@pytest.fixture(scope="module")
def registry():
    registry = collect_methods()
    missing = {"bitfit", *EXTRA_METHODS} - set(registry.names())
    if missing:
        pytest.fail(f"example plugins not installed ({', '.join(sorted(missing))}): run scripts/setup.sh")
    return registry


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory):
    return keyword_folder(tmp_path_factory.mktemp("keywords"), train=128, validation=32, test=64)


def test_example_methods_come_from_their_distributions(registry):
    assert registry.get("bitfit").source == BITFIT
    for name in EXTRA_METHODS:
        assert registry.get(name).source == EXTRAS


def sweep_trains_and_reloads(registry, data, out, model, names):
    """Every method of ``names`` that trains ``model``, in one sweep: complete and reloaded to the same
    predictions; the rest are left out (a sweep would refuse them, see test_model_support)."""
    spec = peftbench.models.resolve_model(model)
    family = model_family(peftbench.models.load_model(spec, ("a", "b"), 0, 50256))
    names = [name for name in names if family not in registry.get(name).method.unsupported]
    board = peftbench.run(
        model=model, dataset=str(data), methods=names, out=out, max_steps=3, references=False,
        progress=False, measure_inference=False, curve_points=0,
    )  # fmt: skip
    records = {r.method: r for r in board.records}
    assert set(records) == set(names)
    for name, record in records.items():
        assert record.status == "complete", f"{name}: {record.error}"
        assert record.reload["predictions_identical"] is True, name
        assert 0 < record.costs["trainable_params"] < record.costs["total_params"]
    return board


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-bert"])
def test_one_of_each_kind_of_example_method_trains_and_reloads_identically(
    registry, keyword_data, tmp_path, model
):
    board = sweep_trains_and_reloads(registry, keyword_data, tmp_path, model, REPRESENTATIVE)
    rows = board.to_frame().set_index("method")
    assert rows.loc["bitfit", "source"] == BITFIT and rows.loc["pissa", "source"] == EXTRAS
    reported = set(rows.loc["adalora", "method_metrics"])
    assert reported == {"final_rank_mean", "final_rank_min", "final_rank_max"}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-bert", "minilm"])
def test_every_example_method_trains_and_reloads_identically(registry, keyword_data, tmp_path, model):
    sweep_trains_and_reloads(registry, keyword_data, tmp_path, model, ["bitfit", *EXTRA_METHODS])


def test_bitfit_trains_exactly_the_biases_and_the_head(registry):
    spec = peftbench.models.resolve_model("tiny-gpt2")
    model = peftbench.models.load_model(spec, ("a", "b"), 0, 50256)
    bitfit = registry.get("bitfit").method
    model = bitfit.prepare(model, None, bitfit.hyperparameters())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        n for n, _ in model.named_parameters() if n.endswith(".bias") or n.startswith("score.")
    }
    assert "score.weight" in trainable and "transformer.h.0.attn.c_attn.weight" not in trainable


@pytest.mark.parametrize("name", ["prompt_tuning", "p_tuning"])
def test_soft_prompts_refuse_last_token_pooling_models_and_say_to_use_prefix_tuning(registry, name):
    """GPT-2 pools the last non-pad token found from input_ids; with only inputs_embeds (what
    peft's soft prompts pass) it pools the last position, a pad for every shorter example."""
    spec = peftbench.models.resolve_model("tiny-gpt2")
    model = peftbench.models.load_model(spec, ("a", "b"), 0, 50256)
    method = registry.get(name).method
    with pytest.raises(peftbench.PeftbenchError) as error:
        method.prepare(model, None, method.hyperparameters())
    message = str(error.value)
    assert message.startswith(f"{name} cannot train GPT2ForSequenceClassification")
    assert PADDING in message and "use prefix_tuning" in message and "\n" not in message


def test_soft_prompts_predict_the_same_alone_or_in_a_padded_batch_on_bert(registry):
    """On an encoder ([CLS] pooling) the soft prompts are accepted and padding changes nothing."""
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=2, pad_token_id=0,
    )  # fmt: skip
    for name in ("prompt_tuning", "p_tuning"):
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(config)
        method = registry.get(name).method
        model = method.prepare(model, None, method.hyperparameters({"num_virtual_tokens": 4})).eval()
        ids = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 0, 0, 0]])
        with torch.no_grad():
            batch = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
            alone = model(input_ids=ids[1:, :2], attention_mask=torch.ones(1, 2, dtype=torch.long)).logits
        torch.testing.assert_close(batch[1:], alone, rtol=1e-4, atol=1e-5)


def adapter_ranks(folder) -> dict[str, int]:
    """AdaLoRA's final rank of each adapted matrix, from the configuration its adapter saved."""
    config = json.loads((folder / "adapter_config.json").read_text())
    return {name: sum(mask) for name, mask in config["rank_pattern"].items()}


@pytest.mark.parametrize(
    ("model", "targets", "modules"), [("tiny-gpt2", "c_attn,c_proj,c_fc", 8), ("minilm", None, 12)]
)
def test_adalora_moves_its_rank_budget_between_matrices(
    registry, keyword_data, tmp_path, model, targets, modules
):
    hp = {"init_r": 6, "target_r": 4, "target_modules": targets}
    board = peftbench.run(
        model=model, dataset=str(keyword_data), methods="adalora", out=tmp_path, epochs=3, references=False,
        hp={"adalora": hp}, progress=False,
    )  # fmt: skip
    (record,) = board.records
    assert record.status == "complete" and record.reload["predictions_identical"] is True, record.error
    ranks = adapter_ranks(tmp_path / record.adapter_path)
    assert len(ranks) == modules and all(0 <= rank <= 6 for rank in ranks.values())
    assert sum(ranks.values()) <= 4 * modules  # the target budget: an average rank of target_r
    assert len(set(ranks.values())) > 1, ranks  # re-allocated: the matrices no longer have one rank
    reported = record.method_metrics  # what AdaLoRA reports about itself: the same final ranks
    assert reported == {
        "final_rank_mean": pytest.approx(sum(ranks.values()) / modules),
        "final_rank_min": min(ranks.values()),
        "final_rank_max": max(ranks.values()),
    }


def test_adalora_adds_its_orthogonality_regulariser_to_the_loss(registry, keyword_data):
    """peft adds it only when the model computes the loss; peftbench's loop gets it from extra_loss."""
    spec = peftbench.models.resolve_model("tiny-gpt2")
    tokenizer = peftbench.models.load_tokenizer(spec)
    split = tokenize_split(tokenizer, load_splits(DatasetSpec(str(keyword_data))).train, 64)
    task = TaskInfo(2, ("bad", "good"), (64, 64), TrainingPlan(4, 4, 1.0, 32, "cpu"))
    method = registry.get("adalora").method
    first_loss, regulariser = {}, {}
    for weight in (0.0, 1.0):
        hp = method.hyperparameters({"orth_reg_weight": weight})
        torch.manual_seed(0)
        model = method.prepare(peftbench.models.load_model(spec, task.label_names, 0, 50256), task, hp)
        regulariser[weight] = float(method.extra_loss(model).detach())
        hooks = StepHooks(extra_loss=lambda model=model: method.extra_loss(model))
        config = TrainConfig(max_steps=1, log_every=1, precision="fp32")
        stats = train(model, split, hp, config, 0, torch.device("cpu"), 50256, progress=False, hooks=hooks)
        first_loss[weight] = stats.loss_history[0][1]
    assert regulariser[0.0] == 0.0 and regulariser[1.0] > 0.1
    assert first_loss[1.0] - first_loss[0.0] == pytest.approx(regulariser[1.0], rel=1e-4)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        (
            "adalora.target_r=12",
            "method 'adalora': target_r=12 must be below init_r=12: the budget only shrinks",
        ),
        (
            "adalora.tfinal=0.95",
            "method 'adalora': tinit=0.1 + tfinal=0.95 must be below 1: no steps would be",
        ),
    ],
)
def test_adalora_rules_between_hyper_parameters_are_one_line_before_training(
    tmp_path, capsys, override, words
):
    from peftbench.cli import main

    args = ["run", "--model", "tiny-gpt2", "--methods", "adalora", "--hp", override, "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"peftbench: error: {words}") and err.count("\n") == 1
    assert not (tmp_path / "records").exists()


def test_adalora_refuses_a_run_too_short_to_re_allocate_and_a_model_it_has_no_targets_for(registry):
    import transformers

    method = registry.get("adalora").method
    hp = method.hyperparameters()
    short = TaskInfo(2, ("a", "b"), (1, 1), TrainingPlan(1, 1, 1.0, 32, "cpu"))
    gpt2 = peftbench.models.load_model(peftbench.models.resolve_model("tiny-gpt2"), ("a", "b"), 0, 50256)
    with pytest.raises(peftbench.PeftbenchError, match="but this run has 1 .* train longer"):
        method.peft_config(gpt2, short, **hp)
    config = transformers.DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64)
    distilbert = transformers.DistilBertForSequenceClassification(config)
    enough = TaskInfo(2, ("a", "b"), (1, 1), TrainingPlan(10, 10, 1.0, 32, "cpu"))
    with pytest.raises(peftbench.PeftbenchError, match="no default modules to adapt in a distilbert model"):
        method.peft_config(distilbert, enough, **hp)
    assert (
        method.peft_config(distilbert, enough, **{**hp, "target_modules": ["q_lin", "v_lin"]}).total_step
        == 10
    )


def test_extra_methods_declare_their_size_and_adalora_is_sized_above_its_target_r(registry):
    keys = {name: registry.get(name).method.size_key for name in ["bitfit", *EXTRA_METHODS]}
    assert keys == {"bitfit": None, **SIZE_KEYS}
    spec = resolve_model("tiny-gpt2")
    base = load_model(spec, ("bad", "good"), 0, load_tokenizer(spec).pad_token_id)
    task = TaskInfo(2, ("bad", "good"), (1, 1), TrainingPlan(100, 100, 1.0, 8, "cpu"))
    adalora = registry.get("adalora").method
    # init_r must stay above target_r (8 by default): the nearest size it allows, off budget.
    nearest = size_method(adalora, adalora.hyperparameters(), {}, base, task, target=1000)
    assert nearest["value"] == 9 and nearest["within"] is False and nearest["achieved"] > 1100
    lowered = {"target_r": 2}
    sized = size_method(adalora, adalora.hyperparameters(lowered), lowered, base, task, target=2200)
    assert sized["within"] is True and 2 < sized["value"] < 8
