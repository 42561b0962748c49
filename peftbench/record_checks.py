"""What every field of a run record must hold, checked when a record is read: the leaderboard,
the site and resuming read them all, so a record that does not fit is refused with one line
naming the field (and the entry) and what it holds instead."""

from __future__ import annotations

import json
import reprlib
from typing import Any

#: How deeply a record's JSON may nest; real records use about 5 levels.
MAX_DEPTH = 64

# What every field of a record must hold: the leaderboard, the site and resuming read them all.
_TEXT_FIELDS = (
    "run_id", "status", "model", "dataset", "method", "method_source", "role", "stage",
    "dataset_fingerprint", "started_at", "finished_at", "task", "metric",
)  # fmt: skip
_OPTIONAL_TEXT_FIELDS = ("adapter_path", "error")
_OBJECT_FIELDS = ("hyperparameters", "train_config", "environment")
_NUMBER_FIELDS = ("metrics", "costs", "method_metrics")  # objects of numbers (NaN is stored as null)
_NUMBER_LIST_FIELDS = ("predictions", "references")  # class ids or values
_TEXT_LIST_FIELDS = ("label_names", "notes")
_INTEGER_COSTS = ("trainable_params", "total_params", "train_steps", "adapter_bytes")
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def kind(value: Any) -> str:
    """A value's JSON type and a short excerpt, for error messages: ``a list ([1, 2])``."""
    kind = _JSON_TYPES.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )
    text = json.dumps(value, default=str) if not isinstance(value, (dict, list)) else reprlib.repr(value)
    text = " ".join(text.split())
    return f"{kind} ({text[:40]}{'...' if len(text) > 40 else ''})" if value is not None else kind


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_depth(data: Any) -> None:
    """Refuse JSON nested deeper than ``MAX_DEPTH`` (later code walks it recursively)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"JSON nested too deeply (a record is at most {MAX_DEPTH} levels deep)")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def check_fields(data: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field whose type the rest of peftbench cannot use."""

    def bad(name: str, wanted: str, value: Any, entry: str = "") -> ValueError:
        where = f"field '{name}'" + (f" entry {entry}" if entry else "")
        return ValueError(f"{where} must be {wanted}, got {kind(value)}")

    for name in _TEXT_FIELDS:
        if name in data and not isinstance(data[name], str):
            raise bad(name, "a string", data[name])
    for name in _OPTIONAL_TEXT_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise bad(name, "a string or null", data[name])
    seed = data.get("seed")
    if not _is_integer(seed) or seed < 0:
        raise bad("seed", "a non-negative integer", seed)
    for name in _OBJECT_FIELDS:
        if name in data and not isinstance(data[name], dict):
            raise bad(name, "an object", data[name])
    for name in _NUMBER_FIELDS:
        values = data.get(name, {})
        if not isinstance(values, dict):
            raise bad(name, "an object of numbers", values)
        for key, value in values.items():
            if value is not None and not _is_number(value):
                raise bad(name, "a number or null", value, repr(key))
    for key in _INTEGER_COSTS:
        value = data.get("costs", {}).get(key)
        if value is not None and not (
            _is_integer(value) or (isinstance(value, float) and value.is_integer())
        ):
            raise bad("costs", "a whole number or null", value, repr(key))
    for name in _NUMBER_LIST_FIELDS:
        values = data.get(name, [])
        if not isinstance(values, list):
            raise bad(name, "a list of numbers", values)
        for index, value in enumerate(values):
            if not _is_number(value):
                raise bad(name, "a number", value, str(index))
    if "higher_is_better" in data and not isinstance(data["higher_is_better"], bool):
        raise bad("higher_is_better", "true or false", data["higher_is_better"])
    for name in _TEXT_LIST_FIELDS:
        values = data.get(name, [])
        if not isinstance(values, list):
            raise bad(name, "a list of strings", values)
        for index, value in enumerate(values):
            if not isinstance(value, str):
                raise bad(name, "a string", value, str(index))
    reload = data.get("reload", {})
    if not isinstance(reload, dict):
        raise bad("reload", "an object", reload)
    identical = reload.get("predictions_identical")
    if identical is not None and not isinstance(identical, bool):
        raise bad("reload", "true, false or null", identical, "'predictions_identical'")
    difference = reload.get("max_abs_logit_difference")
    if difference is not None and not _is_number(difference):
        raise bad("reload", "a number or null", difference, "'max_abs_logit_difference'")
    packages = data.get("environment", {}).get("packages")
    if packages is not None and not isinstance(packages, dict):
        raise bad("environment", "an object or null", packages, "'packages'")
    _check_tuning(data.get("tuning"), bad)
    _check_curves(data.get("curves", {}), bad)
    _check_budget(data.get("budget"), bad)
    _check_training(data.get("training"), bad)
    _check_subset(data.get("train_subset"), bad)


def _check_subset(subset: Any, bad) -> None:
    """``train_subset`` is null or ``{"examples": N, "of": M, "seed": S}`` of whole numbers."""
    if subset is not None and not isinstance(subset, dict):
        raise bad("train_subset", "an object or null", subset)
    for key in ("examples", "of", "seed") if subset else ():
        if not _is_integer(subset.get(key)):
            raise bad("train_subset", "a whole number", subset.get(key), repr(key))


def _check_training(training: Any, bad) -> None:
    """``training`` is null or an object whose steps are whole numbers and ``stopped_early`` a boolean."""
    if training is not None and not isinstance(training, dict):
        raise bad("training", "an object or null", training)
    for key in ("kept_step", "last_step", "max_steps", "from_step") if training else ():
        if not _is_integer(training.get(key)):
            raise bad("training", "a whole number", training.get(key), repr(key))
    if training and not isinstance(training.get("stopped_early"), bool):
        raise bad("training", "true or false", training.get("stopped_early"), "'stopped_early'")


def _check_budget(budget: Any, bad) -> None:
    """``budget`` is null or an object whose counts are whole numbers (or null) and ``within`` a boolean."""
    if budget is None:
        return
    if not isinstance(budget, dict):
        raise bad("budget", "an object or null", budget)
    for key in ("target", "achieved"):
        if budget.get(key) is not None and not _is_integer(budget[key]):
            raise bad("budget", "a whole number or null", budget[key], repr(key))
    if not isinstance(budget.get("within"), bool):
        raise bad("budget", "true or false", budget.get("within"), "'within'")


def _check_tuning(tuning: Any, bad) -> None:
    """``tuning`` is null or ``{"chosen": {...}, "candidates": [{"hyperparameters": {...}, ...}]}``."""
    if tuning is None:
        return
    if not isinstance(tuning, dict):
        raise bad("tuning", "an object or null", tuning)
    chosen = tuning.get("chosen")
    if chosen is not None and not isinstance(chosen, dict):
        raise bad("tuning", "an object or null", chosen, "'chosen'")
    candidates = tuning.get("candidates", [])
    if not isinstance(candidates, list):
        raise bad("tuning", "a list of objects", candidates, "'candidates'")
    for index, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            raise bad("tuning", "an object", candidate, f"'candidates' item {index}")
        hyperparameters = candidate.get("hyperparameters")
        if hyperparameters is not None and not isinstance(hyperparameters, dict):
            raise bad(
                "tuning", "an object or null", hyperparameters, f"'candidates' item {index} 'hyperparameters'"
            )
        for key, score in candidate.items():  # validation_<metric>, validation_loss
            if key.startswith("validation_") and score is not None and not _is_number(score):
                raise bad("tuning", "a number or null", score, f"'candidates' item {index} {key!r}")


def _check_curves(curves: Any, bad) -> None:
    """``curves`` is ``{"series": [[step, value or null], ...]}`` with whole, non-negative steps."""
    if not isinstance(curves, dict):
        raise bad("curves", "an object of [step, value] lists", curves)
    for name, points in curves.items():
        if not isinstance(points, list):
            raise bad("curves", "a list of [step, value] pairs", points, repr(name))
        for index, point in enumerate(points):
            if not (
                isinstance(point, list)
                and len(point) == 2
                and _is_integer(point[0])
                and point[0] >= 0
                and (point[1] is None or _is_number(point[1]))
            ):
                raise bad("curves", "a [step, number or null] pair", point, f"{name!r} item {index}")
