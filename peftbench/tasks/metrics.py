"""The metrics a task is scored by: each computed by scikit-learn or scipy, with its direction and
how the paired bootstrap recomputes it on resampled test examples.

A metric is declared once here (name, title, direction, how it is written) and everything else
reads it: the records store ``metrics[name]`` and ``metrics["validation_" + name]``, tuning selects
on it, the leaderboard ranks and compares by it and every page names it.

The bootstrap resamples test examples thousands of times. Calling the library once per resample
would take minutes per table, so each built-in metric also computes its value on every resample
at once from the draw counts (how often each example was drawn): sums of per-example values
(accuracy, squared error), confusion matrices (F1, Matthews correlation), weighted moments
(Pearson) and mid-ranks recomputed per resample (Spearman). Each is the library's value on the
resampled examples (``tests/test_task_metrics.py`` checks this against the library on gathered
resamples); a metric without such a rule is recomputed by its library call on each resample.

Nothing here imports torch: the leaderboard reads metrics without loading a model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from peftbench.errors import UnknownNameError

#: Resamples behind a standard error where a metric is not a mean of per-example values.
STANDARD_ERROR_RESAMPLES = 2_000

Scores = Callable[[np.ndarray, np.ndarray], float]  # (predictions, references) -> value
Resampled = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (..., counts) -> per resample


def draw_counts(indices: np.ndarray) -> np.ndarray:
    """(resamples x examples) how often each resample drew each example, from the drawn indices."""
    resamples, examples = indices.shape
    flat = (indices + examples * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * examples).reshape(resamples, examples).astype(float)


@dataclass(frozen=True)
class Metric:
    """One way to score predictions against references."""

    name: str  # what records and ``--metric`` call it: a lower-case identifier
    title: str  # what people read: "accuracy", "macro-F1", "Spearman ρ"
    compute: Scores = field(repr=False)  # the library's implementation
    higher_is_better: bool = True
    percent: bool = False  # written x100 with "%" (shares: accuracy, F1)
    digits: int | None = None  # decimals as written (default: 2 for percentages, 3 otherwise)
    description: str = ""
    #: A per-example value whose mean is the metric (accuracy: 1 where right): the bootstrap then
    #: sums draw counts, exactly. ``None``: not decomposable.
    per_example: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    #: The metric on every resample at once, from (predictions, references, counts): counts is
    #: (resamples x examples) how often each example was drawn. ``None``: gather and ``compute``.
    resampled: Resampled | None = field(default=None, repr=False)
    known: bool = True  # False: a stand-in for a metric no installed task declares (see display_metric)

    @property
    def header(self) -> str:
        """A column header: ``accuracy %``, ``Spearman ρ``."""
        return f"{self.title} %" if self.percent else self.title

    def score(self, predictions: np.ndarray, references: np.ndarray) -> float:
        """The metric of one split; NaN where it is undefined (no examples, a constant input)."""
        predictions, references = np.asarray(predictions), np.asarray(references)
        if len(references) == 0:
            return math.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant inputs: the value is NaN, said by the table
            return float(self.compute(predictions, references))

    def on_resamples(self, predictions: np.ndarray, references: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The metric on each resample (a row of ``counts``: how often each example was drawn)."""
        predictions, references = np.asarray(predictions), np.asarray(references)
        if self.per_example is not None:
            return counts @ self.per_example(predictions, references).astype(float) / counts.shape[1]
        if self.resampled is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                return self.resampled(predictions, references, counts)
        drawn = [np.repeat(np.arange(counts.shape[1]), row.astype(int)) for row in counts]
        return np.array([self.score(predictions[i], references[i]) for i in drawn])

    def standard_error(
        self, predictions: np.ndarray, references: np.ndarray, resamples: int = STANDARD_ERROR_RESAMPLES
    ) -> float:
        """The standard error the bootstrap over examples gives this metric on one split: for a
        mean of per-example values (accuracy, squared error) their plug-in standard deviation over
        ``sqrt(n)``, exact (the limit of infinitely many resamples); otherwise the standard
        deviation over ``resamples`` resamples drawn with a fixed seed (the same inputs always give
        the same value). NaN where the metric is undefined on some resample."""
        predictions, references = np.asarray(predictions), np.asarray(references)
        if self.per_example is not None:
            values = np.asarray(self.per_example(predictions, references), dtype=float)
            return float(values.std(ddof=0) / math.sqrt(len(values)))
        examples = len(references)
        indices = np.random.default_rng(0).integers(0, examples, size=(resamples, examples))
        return float(np.std(self.on_resamples(predictions, references, draw_counts(indices))))

    def number(self, value: object, signed: bool = False) -> str:
        """``value`` as a table writes it under ``header`` (``80.00``, ``0.812``); missing is empty."""
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return ""
        if math.isnan(number):
            return ""
        digits = self.digits if self.digits is not None else (2 if self.percent else 3)
        return format(number * (100 if self.percent else 1), f"{'+' if signed else ''}.{digits}f")

    def text(self, value: object) -> str:
        """``value`` in running text: ``80.00%``, ``0.812``."""
        shown = self.number(value)
        return f"{shown}%" if shown and self.percent else shown

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b`` in this metric's direction."""
        return a > b if self.higher_is_better else a < b


# --- the libraries' implementations ------------------------------------------------------------


def _accuracy(predictions, references) -> float:
    from sklearn.metrics import accuracy_score

    return accuracy_score(references, predictions)


def _macro_f1(predictions, references) -> float:
    """The unweighted mean of per-class F1 over the classes in the labels or the predictions: a
    class in the labels never predicted scores 0; a class in neither says nothing and is left out."""
    from sklearn.metrics import f1_score

    return f1_score(references, predictions, average="macro", zero_division=0)


def _f1(predictions, references) -> float:
    from sklearn.metrics import f1_score

    return f1_score(references, predictions, pos_label=1, average="binary", labels=[0, 1], zero_division=0)


def _mcc(predictions, references) -> float:
    from sklearn.metrics import matthews_corrcoef

    return matthews_corrcoef(references, predictions)


def _pearson(predictions, references) -> float:
    from scipy.stats import pearsonr

    if len(references) < 2:
        return math.nan
    return pearsonr(predictions.astype(float), references.astype(float)).statistic


def _spearman(predictions, references) -> float:
    from scipy.stats import spearmanr

    if len(references) < 2:
        return math.nan
    return spearmanr(predictions.astype(float), references.astype(float)).statistic


def _mse(predictions, references) -> float:
    from sklearn.metrics import mean_squared_error

    return mean_squared_error(references.astype(float), predictions.astype(float))


# --- the same on every resample at once, from draw counts ---------------------------------------


def _confusions(predictions, references, counts) -> np.ndarray:
    """(resamples x classes x classes) confusion matrices [true, predicted] of every resample."""
    classes = max(2, int(max(predictions.max(initial=0), references.max(initial=0))) + 1)  # binary: 0 and 1
    cell = references.astype(np.int64) * classes + predictions.astype(np.int64)
    one_hot = np.zeros((len(cell), classes * classes))
    one_hot[np.arange(len(cell)), cell] = 1.0
    return (counts @ one_hot).reshape(len(counts), classes, classes)


def _macro_f1_resampled(predictions, references, counts) -> np.ndarray:
    confusion = _confusions(predictions, references, counts)
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    both = confusion.sum(axis=1) + confusion.sum(axis=2)  # predicted + actual, per class
    present = both > 0
    f1 = np.where(present, 2 * hits / np.where(present, both, 1), 0.0)
    return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _f1_resampled(predictions, references, counts) -> np.ndarray:
    confusion = _confusions(predictions, references, counts)
    both = confusion[:, 1, :].sum(axis=1) + confusion[:, :, 1].sum(axis=1)
    return np.where(both > 0, 2 * confusion[:, 1, 1] / np.where(both > 0, both, 1), 0.0)


def _mcc_resampled(predictions, references, counts) -> np.ndarray:
    """scikit-learn's multi-class formula (Gorodkin's R_K); 0 where it is undefined, as there."""
    confusion = _confusions(predictions, references, counts)
    true, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    correct = np.trace(confusion, axis1=1, axis2=2)
    total = confusion.sum(axis=(1, 2))
    covariance = correct * total - np.einsum("rk,rk->r", true, predicted)
    spread = (total**2 - np.einsum("rk,rk->r", predicted, predicted)) * (
        total**2 - np.einsum("rk,rk->r", true, true)
    )
    return np.where(spread > 0, covariance / np.sqrt(np.where(spread > 0, spread, 1)), 0.0)


def _weighted_pearson(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pearson's r of every resample; ``x`` and ``y`` are (examples,) or (resamples x examples)."""
    total = counts.sum(axis=1)

    def mean(values):
        return (counts * values).sum(axis=1) / total if values.ndim == 2 else counts @ values / total

    mx, my = mean(x), mean(y)
    dx = x - mx[:, None]
    dy = y - my[:, None]
    covariance = (counts * dx * dy).sum(axis=1)
    spread = np.sqrt((counts * dx * dx).sum(axis=1) * (counts * dy * dy).sum(axis=1))
    return np.where(spread > 0, covariance / np.where(spread > 0, spread, 1), np.nan)


def _pearson_resampled(predictions, references, counts) -> np.ndarray:
    x, y = predictions.astype(float), references.astype(float)
    return _weighted_pearson(x - x.mean(), y - y.mean(), counts)  # centred: no cancellation


def _midranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(resamples x examples) each example's average rank among the resample's drawn examples
    (ties share the mean of their ranks, as scipy's ``rankdata`` does)."""
    unique, group = np.unique(values, return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(len(unique)))
    drawn = np.add.reduceat(counts[:, order], starts, axis=1)  # (resamples x distinct values)
    below = np.cumsum(drawn, axis=1) - drawn
    return (below + (drawn + 1) / 2)[:, group]


def _spearman_resampled(predictions, references, counts) -> np.ndarray:
    """Pearson's r of the mid-ranks of every resample; their mean is (draws + 1) / 2 whatever the
    ties, so only the spreads and the covariance are summed."""
    middle = (counts.shape[1] + 1) / 2
    x = _midranks(predictions.astype(float), counts) - middle
    y = _reference_ranks(references.astype(float), counts) - middle
    covariance = np.einsum("ij,ij,ij->i", counts, x, y)
    spread = np.sqrt(np.einsum("ij,ij,ij->i", counts, x, x) * np.einsum("ij,ij,ij->i", counts, y, y))
    return np.where(spread > 0, covariance / np.where(spread > 0, spread, 1), np.nan)


_RANKED: list = [None, None, None]  # the last (counts, references, their mid-ranks)


def _reference_ranks(references: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The references' mid-ranks on these resamples, computed once for every row and seed compared
    on them (the references are the same; only the predictions differ)."""
    cached_counts, cached_references, ranks = _RANKED
    if cached_counts is not counts or not np.array_equal(cached_references, references):
        ranks = _midranks(references, counts)
        _RANKED[:] = [counts, references, ranks]
    return ranks


def _correct(predictions, references) -> np.ndarray:
    return predictions == references


def _squared_error(predictions, references) -> np.ndarray:
    return (predictions.astype(float) - references.astype(float)) ** 2


ACCURACY = Metric(
    "accuracy", "accuracy", _accuracy, percent=True, per_example=_correct,
    description="share of examples whose predicted class is right",
)  # fmt: skip
MACRO_F1 = Metric(
    "macro_f1", "macro-F1", _macro_f1, percent=True, resampled=_macro_f1_resampled,
    description="unweighted mean of per-class F1 over the classes in the labels or the predictions",
)  # fmt: skip
F1 = Metric(
    "f1", "F1", _f1, percent=True, resampled=_f1_resampled,
    description="F1 of the positive class: class 1, the second label name (two classes only)",
)  # fmt: skip
MCC = Metric(
    "mcc", "MCC", _mcc, resampled=_mcc_resampled,
    description="Matthews correlation between predicted and true classes (-1 to 1; 0: chance)",
)  # fmt: skip
PEARSON = Metric(
    "pearson", "Pearson r", _pearson, resampled=_pearson_resampled,
    description="Pearson correlation between predicted and true values",
)  # fmt: skip
SPEARMAN = Metric(
    "spearman", "Spearman ρ", _spearman, resampled=_spearman_resampled,
    description="Spearman rank correlation between predicted and true values",
)  # fmt: skip
MSE = Metric(
    "mse", "MSE", _mse, higher_is_better=False, digits=4, per_example=_squared_error,
    description="mean squared error of the predicted values",
)  # fmt: skip

#: The metrics the built-in tasks use, by name; a plugin's task may declare others.
BUILTIN_METRICS: dict[str, Metric] = {
    m.name: m for m in (ACCURACY, MACRO_F1, F1, MCC, PEARSON, SPEARMAN, MSE)
}


def find_metric(name: str) -> Metric | None:
    """The metric called ``name``: a built-in one, else one a registered task declares (loading
    the task plugins only then); ``None`` where no installed task knows it."""
    if name in BUILTIN_METRICS:
        return BUILTIN_METRICS[name]
    from peftbench.tasks.registry import collect_tasks

    for task in collect_tasks().tasks():
        for metric in task.metrics:
            if metric.name == name:
                return metric
    return None


def _unknown(predictions, references) -> float:
    return math.nan


def display_metric(name: str, higher_is_better: bool = True) -> Metric:
    """The metric called ``name`` (``find_metric``), else a stand-in for one no installed task
    declares (a record from an uninstalled plugin): written plainly under its own name, never
    recomputed (``known`` is false), ``higher_is_better`` as the record says."""
    found = find_metric(name)
    if found is not None:
        return found
    return Metric(name, name, _unknown, higher_is_better=higher_is_better, known=False)


def pick_metric(metrics: dict[str, Metric], name: str, task: str) -> Metric:
    """``metrics[name]``, or one line naming the task and the metrics it has."""
    if name not in metrics:
        known = ", ".join(metrics)
        raise UnknownNameError(f"unknown metric '{name}' for {task}; known metrics: {known}")
    return metrics[name]
