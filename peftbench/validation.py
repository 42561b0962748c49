"""Typed values checked by pydantic, refused in one line: the shared part of settings and
hyper-parameters.

Both are pydantic models (``peftbench.settings``, ``peftbench.methods.hyperparameters``): pydantic
converts and checks each value against its declared type and bounds. What is left here is what
pydantic does not decide for us: numpy scalars count as numbers, ``True`` does not, and the
first thing pydantic refused becomes a :class:`Refusal` that the caller words for people.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo


def _whole(value: Any) -> Any:
    """numpy's integers are whole numbers too (``np.int64(4)``); a bool is not a number here."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _real(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)):
        return float(value)  # a numpy number; an int stays as given, so messages show what was given
    return value


#: An ``int`` setting that also takes numpy integers (strict models refuse them otherwise).
Whole = Annotated[int, BeforeValidator(_whole)]
#: A ``float`` setting that also takes numpy numbers.
Real = Annotated[float, BeforeValidator(_real)]

_BOUND_WORDS = {"gt": "above", "ge": "at least", "lt": "below", "le": "at most"}
_BOUND_SYMBOLS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}


@dataclass(frozen=True)
class Refusal:
    """The first value a model refused: which field, what was given, and why (pydantic's type)."""

    name: str
    value: Any
    kind: str  # pydantic's error type: "greater_than_equal", "int_parsing", "extra_forbidden", ...
    message: str  # pydantic's own message, used for refusals raised by our own validators
    field: FieldInfo | None

    @property
    def out_of_range(self) -> bool:
        return self.kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal")

    @property
    def not_finite(self) -> bool:
        return self.kind == "finite_number"

    @property
    def choices(self) -> tuple[Any, ...]:
        """The allowed values of a ``Literal`` field (empty for other fields)."""
        args = getattr(self.field.annotation, "__args__", ()) if self.field else ()
        return tuple(args) if self.kind == "literal_error" else ()


def refusal(model: type[BaseModel], error: ValidationError) -> Refusal:
    """The first error of ``error`` (raised by validating ``model``) as a :class:`Refusal`."""
    first = error.errors(include_url=False)[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    message = str(first.get("ctx", {}).get("error", first["msg"]))
    return Refusal(name, first.get("input"), first["type"], message, model.model_fields.get(name))


def field_bounds(field: FieldInfo | None) -> dict[str, float]:
    """``{"ge": 1, "le": 1000}``: the numeric bounds declared on a field."""
    found = {}
    for constraint in field.metadata if field else ():
        for key in _BOUND_WORDS:
            value = getattr(constraint, key, None)
            if value is not None:
                found[key] = value
    return found


def range_hint(field: FieldInfo | None) -> str:
    """``use a number above 0 and at most 1000``, from the field's type and bounds."""
    limits = " and ".join(f"{_BOUND_WORDS[key]} {value:g}" for key, value in field_bounds(field).items())
    kind = type_name(field)
    if not limits:
        return f"use {_TYPE_WORDS.get(kind, kind)}"
    return f"use a number {limits}" if kind == "float" else f"use {limits}"


def range_text(field: FieldInfo | None) -> str:
    """``≥ 1``, ``0 to 0.99``, ``> 0 and ≤ 1000``: a field's bounds for a reference table."""
    found = field_bounds(field)
    if set(found) == {"ge", "le"}:
        return f"{found['ge']:g} to {found['le']:g}"
    return " and ".join(f"{_BOUND_SYMBOLS[key]} {value:g}" for key, value in found.items())


def interval(field: FieldInfo | None) -> str:
    """``[1, inf]``: the closed interval a field's bounds allow (open sides as -inf/inf)."""
    found = field_bounds(field)
    low = found.get("ge", found.get("gt", -math.inf))
    high = found.get("le", found.get("lt", math.inf))
    return f"[{low:g}, {high:g}]"


def type_name(field: FieldInfo | None) -> str:
    """``int``, ``float``, ``bool``, ``str``: the field's type without ``| None`` and validators;
    ``one of a, b`` for a ``Literal`` (the choices, as help and refusals show them)."""
    annotation = field.annotation if field else None
    while True:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            annotation = args[0]
        elif origin in (Union, UnionType) and len([a for a in args if a is not type(None)]) == 1:
            annotation = next(a for a in args if a is not type(None))
        elif origin is Literal:
            return "one of " + ", ".join(str(choice) for choice in args)
        else:
            return getattr(annotation, "__name__", str(annotation))


def type_words(field: FieldInfo | None) -> str:
    """``a whole number``, ``a number``, ``true or false``: a field's type for people."""
    kind = type_name(field)
    return _TYPE_WORDS.get(kind, kind)
