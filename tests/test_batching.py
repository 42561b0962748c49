"""Batching: right padding to each batch's longest example."""

from __future__ import annotations

import numpy as np

from peftbench.batching import TokenizedSplit, collate


def test_collate_pads_right_to_the_batch_longest():
    split = TokenizedSplit([np.array([5, 6, 7]), np.array([8])], np.array([0, 1]))
    batch = collate(split, np.array([0, 1]), pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
