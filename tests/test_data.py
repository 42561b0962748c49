import json

import numpy as np
import pandas as pd
import pytest

from peftbench.data import DatasetSpec, load_splits
from peftbench.errors import PeftbenchError


def test_rotten_tomatoes_resolves_against_the_mirror(mirror_path):
    data = load_splits(DatasetSpec("rotten_tomatoes"))
    assert (len(data.train), len(data.validation), len(data.test)) == (8530, 1066, 1066)
    assert data.label_names == ("neg", "pos")
    assert data.source == str(mirror_path / "datasets" / "rotten_tomatoes")
    assert data.notes == []
    assert np.bincount(data.test.labels).tolist() == [533, 533]


def test_hub_id_resolves_to_the_mirror_by_its_last_part(mirror_path):
    data = load_splits(DatasetSpec("dair-ai/emotion"))
    assert data.label_names == ("sadness", "joy", "love", "anger", "fear", "surprise")
    assert data.num_labels == 6 and len(data.train) == 16000


def test_a_mistyped_path_never_falls_back_to_the_mirror(mirror_path, tmp_path):
    for name in ("./data/rotten_tomatoes", str(tmp_path / "emotion"), "a/b/rotten_tomatoes"):
        with pytest.raises(PeftbenchError, match="does not exist|could not load dataset"):
            load_splits(DatasetSpec(name))


def test_csv_with_other_column_names_and_string_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame(
        {"review": [f"text {i}" for i in range(50)], "sentiment": ["pos", "neg", "meh", "pos", "neg"] * 10}
    ).to_csv(path, index=False)
    data = load_splits(DatasetSpec(str(path), label_column="sentiment"))
    assert data.text_column == "review"  # auto-detected
    assert data.label_names == ("meh", "neg", "pos")  # sorted string labels
    assert len(data.train) + len(data.validation) + len(data.test) == 50
    assert "test carved from train (10%, seed 0)" in data.notes
    assert "validation carved from train (10%, seed 0)" in data.notes


def test_carving_is_seeded_and_disjoint(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"sentence": f"s{i}", "label": i % 3}) for i in range(200)))
    first, second = load_splits(DatasetSpec(str(path))), load_splits(DatasetSpec(str(path)))
    assert first.test.texts == second.test.texts
    assert first.fingerprint() == second.fingerprint()
    splits = [set(s.texts) for s in (first.train, first.validation, first.test)]
    assert sum(map(len, splits)) == 200 and len(set.union(*splits)) == 200
    assert first.label_names == ("0", "1", "2")


def test_missing_column_names_the_columns_found(tmp_path):
    path = tmp_path / "x.csv"
    pd.DataFrame({"body": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with pytest.raises(PeftbenchError) as error:
        load_splits(DatasetSpec(str(path)))
    assert "no text column" in str(error.value)
    assert "columns found: body, label" in str(error.value)
    with pytest.raises(PeftbenchError, match="no label column 'stars'; columns found: body, label"):
        load_splits(DatasetSpec(str(path), text_column="body", label_column="stars"))


def test_labels_outside_the_class_range_are_refused(keyword_dataset):
    frame = pd.read_parquet(keyword_dataset / "test.parquet")
    frame.loc[0, "label"] = 7
    frame.to_parquet(keyword_dataset / "test.parquet")
    with pytest.raises(PeftbenchError, match="test split has 1 labels outside 0..1"):
        load_splits(DatasetSpec(str(keyword_dataset)))


def test_missing_local_path_is_a_clear_error(tmp_path):
    with pytest.raises(PeftbenchError, match="does not exist"):
        load_splits(DatasetSpec(str(tmp_path / "nope.csv")))


def test_a_train_split_with_one_class_is_refused(tmp_path):
    path = tmp_path / "one.csv"
    pd.DataFrame({"text": [f"text {i}" for i in range(40)], "label": ["pos"] * 40}).to_csv(path, index=False)
    with pytest.raises(PeftbenchError) as error:
        load_splits(DatasetSpec(str(path)))
    assert str(error.value) == (
        f"dataset '{path}': the train split has only one class ('pos'); a classifier needs at least two: "
        "check the label column (--label-column) or the data"
    )


def test_a_file_that_is_not_utf8_says_where(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nfine,0\ncaf\xe9 good,1\n".encode("latin-1"))
    with pytest.raises(PeftbenchError) as error:
        load_splits(DatasetSpec(str(path)))
    assert str(error.value) == (
        f"could not read dataset at '{path}': latin.csv is not UTF-8 text: byte 0xe9 at line 3, column 4; "
        "save the file as UTF-8"
    )


def test_a_jsonl_line_that_does_not_parse_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [json.dumps({"text": f"row {i}", "label": i % 2}) for i in range(30)]
    rows[4] = '{"text": "broken" "label": 0}'
    path.write_text("\n".join(rows))
    with pytest.raises(PeftbenchError) as error:
        load_splits(DatasetSpec(str(path)))
    message = str(error.value)
    assert message.startswith(f"could not read dataset at '{path}': rows.jsonl line 5 is not valid JSON (")
    assert "DatasetGenerationError" not in message and "\n" not in message


def test_an_unreadable_file_on_the_command_line_is_one_line_with_its_cause(tmp_path, capsys):
    from peftbench.cli import main

    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nfine,0\ncaf\xe9 good,1\n".encode("latin-1"))
    assert main(["run", "--model", "tiny-gpt2", "--dataset", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"peftbench: error: could not read dataset at '{path}': latin.csv is not UTF-8 text: byte 0xe9 at "
        "line 3, column 4; save the file as UTF-8\n"
    )


def test_a_training_subset_is_fixed_and_leaves_validation_and_test_untouched(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"sentence": f"s{i}", "label": i % 3}) for i in range(300)))
    whole = load_splits(DatasetSpec(str(path)))
    first, again = (load_splits(DatasetSpec(str(path), train_examples=50)) for _ in range(2))
    assert len(first.train) == 50 and first.train.texts == again.train.texts  # the same draw every time
    assert set(first.train.texts) < set(whole.train.texts)
    order = [whole.train.texts.index(text) for text in first.train.texts]
    assert order == sorted(order)  # in the split's order
    assert first.validation.texts == whole.validation.texts and first.test.texts == whole.test.texts
    assert first.train_subset == {"examples": 50, "of": len(whole.train), "seed": 0}
    assert whole.train_subset is None
    assert first.fingerprint() != whole.fingerprint()
    assert first.notes[-1] == (
        f"trained on a fixed subset of 50 of the {len(whole.train)} training examples (seed 0); "
        "validation and test untouched"
    )


def test_a_training_subset_as_large_as_the_split_is_refused(keyword_dataset):
    with pytest.raises(PeftbenchError, match=r"--train-examples 256 is not fewer than the 256 training"):
        load_splits(DatasetSpec(str(keyword_dataset), train_examples=256))
