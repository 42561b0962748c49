"""Batching: right padding to each batch's longest example, or to static shapes for a compiled model."""

from __future__ import annotations

import numpy as np
import pytest

from peftbench.batching import PAD_LABEL, StaticShapes, TokenizedSplit, bucket_widths, collate


def test_collate_pads_right_to_the_batch_longest():
    split = TokenizedSplit([np.array([5, 6, 7]), np.array([8])], np.array([0, 1]))
    batch = collate(split, np.array([0, 1]), pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize(
    ("max_length", "widths"),
    [(128, (16, 32, 64, 128)), (100, (16, 32, 64, 100)), (16, (16,)), (17, (16, 17)), (10, (10,))],
)
def test_bucket_widths_are_powers_of_two_up_to_max_length(max_length, widths):
    assert bucket_widths(max_length) == widths


@pytest.mark.parametrize("max_length", [2, 16, 100, 512])
def test_every_length_maps_to_the_smallest_width_that_holds_it(max_length):
    shapes = StaticShapes.for_lengths(max_length, rows=4)
    assert shapes.widths[-1] == max_length and list(shapes.widths) == sorted(set(shapes.widths))
    for length in range(1, max_length + 1):
        assert shapes.width(length) == min(w for w in shapes.widths if w >= length), length
    assert shapes.width(max_length + 3) == max_length + 3  # longer than any width: its own


def test_static_shapes_fill_the_batch_with_rows_the_loss_ignores():
    split = TokenizedSplit([np.array([5, 6, 7]), np.array([8])], np.array([0, 1]))
    batch = collate(split, np.array([0, 1]), pad_id=0, shapes=StaticShapes((2, 4, 8), rows=3))
    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0], [0, 0, 0, 0]]
    # A filler row attends to one token, so no attention row is fully masked (NaN-free).
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert batch["labels"].tolist() == [0, 1, PAD_LABEL]
    full = collate(split, np.array([1, 0]), pad_id=0, shapes=StaticShapes((2, 4, 8), rows=2))
    assert full["labels"].tolist() == [1, 0] and full["input_ids"].shape == (2, 4)
