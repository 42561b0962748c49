import numpy as np
import pytest

from peftbench.metrics import ClassificationMetrics, classification_scores, compute_metrics


def test_known_values():
    scores = compute_metrics(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert scores["accuracy"] == pytest.approx(0.75)
    # per-class F1: 1, 2/3, 2/3
    assert scores["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_evaluate_module_agrees_with_numpy_and_accumulates_batches():
    rng = np.random.default_rng(0)
    predictions, references = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    metric = ClassificationMetrics()
    for start in range(0, 500, 100):
        metric.add_batch(
            predictions=predictions[start : start + 100], references=references[start : start + 100]
        )
    assert metric.compute(num_labels=4) == pytest.approx(classification_scores(predictions, references, 4))


def test_constant_prediction_macro_f1_counts_missed_class_as_zero():
    scores = classification_scores(np.zeros(4, dtype=int), np.array([0, 0, 1, 1]), 2)
    assert scores["accuracy"] == 0.5
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_leaves_out_a_class_absent_from_labels_and_predictions():
    """As scikit-learn's macro average does: a class neither present nor predicted says nothing."""
    perfect = classification_scores(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), num_labels=3)
    assert perfect == {"accuracy": 1.0, "macro_f1": 1.0}
    # Class 2 is predicted once but never present: it counts, with F1 = 0.
    wrong = classification_scores(np.array([0, 2, 1, 1]), np.array([0, 0, 1, 1]), num_labels=3)
    assert wrong["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
