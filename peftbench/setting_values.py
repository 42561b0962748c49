"""List-valued settings as people write them (``"lora,ia3"``, ``"0,1,2"``, ``["lora.r=16"]``) read
into tuples and dicts, each name once, or refused in one line that says what to write instead."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping
from typing import Any

from peftbench.errors import PeftbenchError

#: torch, numpy and CUDA generators all take a 32-bit seed.
SEED_LIMIT = 2**32


def _each_once(names: list[str], kind: str, option: str) -> tuple[str, ...]:
    """``names`` as a tuple, or one line naming the first that is given twice."""
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise PeftbenchError(f"{kind} '{twice}' is named twice in {option}: name each {kind} once")
    return tuple(names)


def method_names(value: Any) -> tuple[str, ...]:
    """``"lora,ia3"`` or ``["lora", "ia3"]``: each name once."""
    names = [part.strip() for part in value.split(",")] if isinstance(value, str) else list(value)
    if not names or names == [""]:
        raise PeftbenchError("no methods given: pass at least one, e.g. --methods lora")
    return _each_once(names, "method", "--methods")


def dataset_names(value: Any) -> tuple[str, ...]:
    """``"rotten_tomatoes,emotion"`` or ``["rotten_tomatoes", "emotion"]`` (a ``Path`` is one dataset):
    each dataset once, in order."""
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    else:
        items = [value] if isinstance(value, os.PathLike) or not isinstance(value, Iterable) else value
        names = [os.fspath(item) if isinstance(item, os.PathLike) else item for item in items]
    wrong = next((name for name in names if not isinstance(name, str)), None)
    if wrong is not None:
        raise PeftbenchError(f"dataset {wrong!r} is not a name or path: pass e.g. --dataset rotten_tomatoes")
    if not [name for name in names if name]:
        raise PeftbenchError("no dataset given: pass one or more, e.g. --dataset rotten_tomatoes,emotion")
    if "" in names:
        raise PeftbenchError("an empty dataset name in --dataset: separate datasets with single commas")
    return _each_once(names, "dataset", "--dataset")


def seed_list(value: Any) -> tuple[int, ...]:
    """``"0,1,2"``, ``[0, 1, 2]`` or ``3`` (one seed): non-negative, below 2**32, each once."""
    if isinstance(value, str):
        parsed = []
        for part in (part.strip() for part in value.split(",")):
            try:
                parsed.append(int(part))
            except ValueError:
                raise PeftbenchError(f"seed '{part}' is not an integer: write --seeds 0,1,2") from None
        value = parsed
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    seeds = []
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise PeftbenchError(f"seed {seed!r} is not a non-negative integer")
        if seed >= SEED_LIMIT:
            raise PeftbenchError(f"seed {seed} is too large: use one below 2**32 ({SEED_LIMIT})")
        seeds.append(int(seed))
    if not seeds:
        raise PeftbenchError("no seeds given: pass at least one, e.g. --seeds 0")
    return tuple(dict.fromkeys(seeds))


def parse_hp_overrides(items: Iterable[str] | Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict]:
    """``["lora.r=16", "ia3.learning_rate=0.01"]`` (or an already nested dict) -> nested dict."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {method: dict(values) for method, values in items.items()}
    nested: dict[str, dict[str, Any]] = {}
    for item in [items] if isinstance(items, str) else items:
        target, sep, value = item.partition("=")
        method, dot, key = target.strip().partition(".")
        if not (sep and dot and method and key):
            raise PeftbenchError(
                f"bad hyper-parameter override '{item}': write METHOD.KEY=VALUE, e.g. lora.r=16"
            )
        values = nested.setdefault(method, {})
        if key.strip() in values:
            raise PeftbenchError(f"hyper-parameter '{method}.{key.strip()}' is given twice: give it once")
        values[key.strip()] = value.strip()
    return nested
