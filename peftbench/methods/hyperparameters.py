"""Method hyper-parameters, each declared once: its type, default, bounds and help.

A method declares them as a pydantic model, a subclass of ``TrainingHyperparameters`` (which
brings the learning rate, weight decay and warm-up every trained method has)::

    class Hyperparameters(TrainingHyperparameters):
        r: int = Field(8, ge=1, description="rank of the low-rank update")

pydantic converts ``--hp lora.r=16`` (a string) to the declared type and checks the bounds;
what it refuses is worded here as one line naming the method and the key. Why pydantic rather
than a dataclass: the conversion of command-line strings, bounds, finiteness and unknown keys
are what a plugin author would otherwise write by hand for every method, and pydantic already
does them, for every type, in one declaration that the docs and ``peftbench methods`` read too.

A rule between two hyper-parameters is a pydantic ``model_validator`` on the model that raises
``ValueError`` naming both (``target_r must be below init_r``): it is checked with the values,
before any training. A plugin may still declare plain ``defaults`` (and ``bounds``) dicts on its
``Method``: a model is built from them, the type of each default being the accepted type.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from peftbench.errors import PeftbenchError
from peftbench.validation import Refusal, field_bounds, interval, range_text, refusal, type_name

MODULE_NAMES_FORMS = 'module names, e.g. query,value or ["query", "value"]'


def _module_names(value: Any) -> list[str] | None:
    """``None``, a list of names, a JSON list or ``"query,value"`` -> ``None`` or a list of names.

    peft reads a plain string as a regular expression, so ``--hp lora.target_modules=query,value``
    would otherwise match nothing and fail every run late.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") or text == "null":
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text  # refused below, with the accepted forms
        elif text:
            value = [part.strip() for part in text.split(",")]
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) and name.strip() for name in value):
        return [name.strip() for name in value]
    raise PydanticCustomError("module_names", f"must be {MODULE_NAMES_FORMS}, got {value!r}")


def _container(text: str) -> Any:
    """A list or dict hyper-parameter from the command line: JSON, or ``a,b`` for ``["a", "b"]``
    (pydantic then converts each item to the declared type)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [part.strip() for part in text.split(",") if part.strip()]


ModuleNames = Annotated[list[str] | None, BeforeValidator(_module_names)]
"""The type of a hyper-parameter naming modules to adapt (``None``: peft's default for the
architecture). Takes ``query,value``, ``["query", "value"]`` or a list; always holds a list."""


class Hyperparameters(BaseModel):
    """Hyper-parameters of a method that trains nothing; the base of every method's model."""

    # validate_default: a method's own default outside its own bounds is refused, not used.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, validate_default=True)


@dataclass(frozen=True)
class SearchRange:
    """How far ``--tune`` may extend a numeric key beyond its search space, and with which spacing."""

    low: float | None  # None: open on that side
    high: float | None
    log: bool  # spaced by ratios (learning rates), else by differences


#: Where every method's learning rate is searched, unless a method gives a narrower range and says why.
LEARNING_RATE_SEARCH = SearchRange(1e-6, 1e-1, log=True)


def search_range(low: float | None, high: float | None, log: bool = False) -> dict[str, Any]:
    """A field's ``json_schema_extra`` declaring its search range: ``Field(8, ge=1,
    json_schema_extra=search_range(1, 64, log=True))``."""
    return {"search": {"low": low, "high": high, "log": log}}


def declared_search_range(field: FieldInfo | None) -> SearchRange:
    """The key's declared search range, else its validation bounds with linear spacing."""
    declared = (field.json_schema_extra or {}).get("search") if field is not None else None
    if isinstance(declared, dict):
        return SearchRange(declared.get("low"), declared.get("high"), bool(declared.get("log")))
    bounds = field_bounds(field)
    return SearchRange(bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt")), log=False)


class TrainingHyperparameters(Hyperparameters):
    """The optimiser's hyper-parameters, which every method that trains has."""

    learning_rate: float = Field(
        5e-4,
        ge=1e-12,
        description="peak learning rate of AdamW",
        json_schema_extra=search_range(LEARNING_RATE_SEARCH.low, LEARNING_RATE_SEARCH.high, log=True),
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW's decoupled weight decay")
    warmup_ratio: float = Field(
        0.06, ge=0.0, le=1.0, description="share of the steps with a linear warm-up (then linear decay)"
    )


def learning_rate_field(
    default: float, search: tuple[float, float] | None = None, reason: str | None = None
) -> Any:
    """The learning rate with a method's own default; its bounds and help stay as declared above:
    ``learning_rate: float = learning_rate_field(1e-3)``. ``--tune`` searches it within
    ``LEARNING_RATE_SEARCH``; a method with a reason for a narrower ``search`` range gives both,
    and the reason becomes part of the key's help."""
    declared = TrainingHyperparameters.model_fields["learning_rate"]
    extra, description = declared.json_schema_extra, declared.description
    if search is not None:
        low, high = search
        if not reason:
            raise PeftbenchError(
                "learning_rate_field: a narrower learning-rate search range needs its reason (reason=...)"
            )
        if low < LEARNING_RATE_SEARCH.low or high > LEARNING_RATE_SEARCH.high or low >= high:
            raise PeftbenchError(
                f"learning_rate_field: search range {low:g} to {high:g} is not inside "
                f"{LEARNING_RATE_SEARCH.low:g} to {LEARNING_RATE_SEARCH.high:g}"
            )
        extra = search_range(low, high, log=True)
        description = f"{description}; searched from {low:g} to {high:g}: {reason}"
    return Field(default, description=description, json_schema_extra=extra, **field_bounds(declared))


@dataclass(frozen=True)
class Declared:
    """One hyper-parameter as a reference table shows it."""

    name: str
    default: Any
    type: str
    range: str
    help: str


def declared(model: type[Hyperparameters]) -> list[Declared]:
    """Each hyper-parameter of ``model``: name, default, type, allowed range and help, in order."""
    return [
        Declared(
            name,
            field.get_default(call_default_factory=True),
            type_name(field),
            range_text(field),
            field.description or "",
        )
        for name, field in model.model_fields.items()
    ]


def from_defaults(
    name: str,
    defaults: dict[str, Any],
    bounds: dict[str, tuple[float | None, float | None]],
    trains: bool,
) -> type[Hyperparameters]:
    """The model of a method that declares plain ``defaults`` and ``bounds`` dicts.

    The type of each default is the accepted type; a ``None`` default takes any value, except a
    ``*_modules`` key, which takes module names (``ModuleNames``). Inclusive ``(low, high)``
    bounds, ``None`` for an open side, replace those of an inherited training hyper-parameter.
    """
    base = TrainingHyperparameters if trains else Hyperparameters
    if not defaults and not bounds:
        return base
    fields: dict[str, Any] = {}
    for key in dict.fromkeys([*defaults, *bounds]):
        inherited = base.model_fields.get(key)
        if key not in defaults and inherited is None:
            raise PeftbenchError(f"method '{name}' gives bounds for '{key}', which is not in its defaults")
        default = defaults.get(key, inherited.default if inherited else None)
        limits = field_bounds(inherited)
        annotation = inherited.annotation if inherited else _annotation(key, default)
        if key in bounds and annotation not in (int, float):
            raise PeftbenchError(
                f"method '{name}' gives bounds for '{key}', whose default {default!r} is not a number"
            )
        if key in bounds:
            low, high = bounds[key]
            if annotation is int:  # an int bounded by 1e-12 takes 1 and up
                low = None if low is None else math.ceil(low)
                high = None if high is None else math.floor(high)
            limits = {k: v for k, v in (("ge", low), ("le", high)) if v is not None}
        description = inherited.description if inherited else None
        extra = inherited.json_schema_extra if inherited else None
        fields[key] = (annotation, Field(default, description=description, json_schema_extra=extra, **limits))
    return create_model(f"{name.title().replace('_', '')}Hyperparameters", __base__=base, **fields)


def _annotation(key: str, default: Any) -> Any:
    if default is None:
        return ModuleNames if key.endswith("_modules") else Any
    if isinstance(default, (list, tuple)):
        kinds = {type(item) for item in default}
        return list[kinds.pop()] if len(kinds) == 1 else list  # [1, 2] takes whole numbers
    return type(default)


def resolve(method: str, model: type[Hyperparameters], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults of ``model`` with ``overrides`` applied and checked; one line naming the key if not."""
    overrides = dict(overrides or {})
    for key, value in overrides.items():
        field = model.model_fields.get(key)
        if isinstance(value, bool) and type_name(field) in ("int", "float"):  # pydantic takes True as 1
            raise PeftbenchError(_words(method, model, Refusal(key, value, "bool", "", field)))
        parses_text = any(isinstance(item, BeforeValidator) for item in field.metadata) if field else True
        if (
            isinstance(value, str)
            and type_name(field) in ("list", "tuple", "set", "dict")
            and not parses_text
        ):
            overrides[key] = _container(value)  # from the command line: JSON, or a,b,c for a list
    try:
        return model(**overrides).model_dump()
    except ValidationError as error:
        raise PeftbenchError(_words(method, model, refusal(model, error))) from None


def _words(method: str, model: type[Hyperparameters], refused: Refusal) -> str:
    key, value, field = refused.name, refused.value, refused.field
    if not key:  # a rule between hyper-parameters (a model validator): its own words name them
        return f"method '{method}': {refused.message}"
    if refused.kind == "extra_forbidden":
        known = ", ".join(sorted(model.model_fields)) or "none, it takes no hyper-parameters"
        return f"method '{method}' has no hyper-parameter '{key}'; known: {known}"
    shown = _as_declared(value, field)
    if refused.not_finite:
        return f"method '{method}': hyper-parameter '{key}'={shown} must be a finite number"
    if refused.out_of_range:
        return f"method '{method}': hyper-parameter '{key}'={shown} is out of range {interval(field)}"
    if refused.kind == "module_names":
        return f"method '{method}': hyper-parameter '{key}' {refused.message}"
    return f"method '{method}': hyper-parameter '{key}' must be {type_name(field)}, got {value!r}"


def _as_declared(value: Any, field) -> Any:
    """A refused value as its field's type holds it (``"2"`` for a float is shown as ``2.0``)."""
    kind = type_name(field)
    try:
        return float(value) if kind == "float" else int(value) if kind == "int" else value
    except (TypeError, ValueError):
        return value
