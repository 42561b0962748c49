"""The training loop's batches: every example once per epoch, in length buckets."""

from __future__ import annotations

import numpy as np

from peftbench.batching import TokenizedSplit, eval_batches
from peftbench.settings import TrainConfig
from peftbench.train import plan_batches


def random_split(count: int, seed: int = 0) -> TokenizedSplit:
    rng = np.random.default_rng(seed)
    return TokenizedSplit(
        [np.arange(rng.integers(1, 80)) for _ in range(count)], np.zeros(count, dtype=np.int64)
    )


def test_every_example_is_trained_once_per_epoch_in_length_buckets():
    split = random_split(1000)
    batches = plan_batches(split, TrainConfig(epochs=2, batch_size=16), seed=3)
    assert len(batches) == 2 * 63
    first_epoch = np.concatenate(batches[:63])
    assert sorted(first_epoch.tolist()) == list(range(1000))
    assert (
        plan_batches(split, TrainConfig(epochs=2, batch_size=16), seed=3)[5].tolist() == batches[5].tolist()
    )

    def efficiency(groups):
        real = sum(split.lengths[g].sum() for g in groups)
        return real / sum(len(g) * split.lengths[g].max() for g in groups)

    shuffled = np.array_split(np.random.default_rng(0).permutation(1000), 63)
    assert efficiency(batches[:63]) > 0.9 > efficiency(shuffled)
    assert efficiency(eval_batches(split, 16)) >= efficiency(batches[:63])  # fully sorted: the least padding
