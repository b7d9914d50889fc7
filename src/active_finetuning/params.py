"""Parameter records, declared once (as scikit-learn's ``_parameter_constraints`` do).

A selection method's parameters, the probe's and the finetuning recipe are a frozen dataclass deriving from :class:`Params`. Each field's type
hint is its type (``Literal[...]`` lists its choices, ``X | None`` allows None) and
:func:`parameter` adds its range and a one-line help. From that one declaration come:

* validation when the record is built (the message names the parameter, the value and what is
  allowed);
* conversion of strings (CLI flags, YAML) and of KFP's JSON numbers (every number a float) into
  the declared types (:func:`coerce`);
* the CLI's ``--kebab-case`` flags with their help, the ``methods`` listing, and the invalid values
  the test suite tries for every parameter (:func:`invalid_values`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import InputError

CLOSED = ("both", "left", "right", "neither")


@dataclass(frozen=True)
class Interval:
    """A range of ``int`` or ``float`` values; ``None`` leaves a side unbounded."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def accepts(self, value: Any) -> bool:
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        if self.high is not None and (value > self.high or (value == self.high and self.closed in ("left", "neither"))):
            return False
        return True

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        left_open = self.closed in ("right", "neither")
        right_open = self.closed in ("left", "neither")
        if self.low is not None and self.high is not None:
            return f"{noun} in {'(' if left_open else '['}{self.low:g}, {self.high:g}{')' if right_open else ']'}"
        if self.low is not None:
            return f"{noun} {'>' if left_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{noun} {'<' if right_open else '<='} {self.high:g}"
        return noun

    def invalid(self) -> list[Any]:
        """Values just outside the range (for the test suite)."""
        out = []
        if self.low is not None:
            out.append(self.low if self.closed in ("right", "neither") else self.kind(self.low - 1))
        if self.high is not None:
            out.append(self.high if self.closed in ("left", "neither") else self.kind(self.high + 1))
        return out


RESOLVED = ("selection", "cache")


def parameter(default: Any, interval: Interval | None = None, help: str = "",
              resolves: Literal["selection", "cache"] | None = None) -> Any:
    """A field of a parameter record: its default, its range (if any) and a one-line help.

    ``resolves`` marks a URI that :func:`~active_finetuning.selection.select` opens for the
    selector, which stays free of I/O: ``"selection"``, a selection artifact placed on the pool
    (``pool.inputs[name]``); ``"cache"``, a directory of arrays kept between runs (``pool.cache``).
    """
    return dataclasses.field(default=default, metadata={"interval": interval, "help": help, "resolves": resolves})


class Params:
    """Base of every parameter record: validates each field against its declaration."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            check(field.name, getattr(self, field.name), hints[field.name], field.metadata.get("interval"))

    @classmethod
    def from_values(cls, owner: str = "", **values: Any):
        """Build the record from strings or KFP values, naming any unknown parameter (and ``owner``,
        e.g. ``"method 'activeft'"``)."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            owner = f" for {owner}" if owner else ""
            raise InputError(f"unknown parameter {unknown[0]!r}{owner}; its parameters are: "
                             f"{', '.join(allowed) or '(none)'}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: coerce(name, value, hints[name]) for name, value in values.items()})

    def resolved(self) -> dict[str, tuple[str, str]]:
        """``{name: (kind, uri)}`` of the set parameters that name artifacts to open (see :func:`parameter`)."""
        return {f.name: (f.metadata["resolves"], getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata.get("resolves") and getattr(self, f.name) is not None}

    @classmethod
    def declarations(cls) -> list[dict[str, Any]]:
        """One entry per parameter: name, default, what is allowed, help (CLI and ``methods``)."""
        hints = typing.get_type_hints(cls)
        return [{"name": f.name, "default": f.default, "allowed": allowed(hints[f.name], f.metadata.get("interval")),
                 "choices": choices(hints[f.name]), "help": f.metadata.get("help", "")}
                for f in dataclasses.fields(cls)]


# ----------------------------------------------------------------------------------------------
# one declaration, read four ways


def _split(hint: Any) -> tuple[list[Any], bool]:
    """(the non-None types of ``hint``, whether None is allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return [a for a in args if a is not type(None)], type(None) in args
    return [hint], False


def choices(hint: Any) -> list[Any] | None:
    inner, _ = _split(hint)
    literal = [a for a in inner if typing.get_origin(a) is Literal]
    return list(typing.get_args(literal[0])) if literal else None


def allowed(hint: Any, interval: Interval | None) -> str:
    """What ``check`` accepts, in words."""
    inner, nullable = _split(hint)
    words = []
    for kind in inner:
        if typing.get_origin(kind) is Literal:
            words.append("one of " + ", ".join(repr(c) for c in typing.get_args(kind)))
        elif kind in (int, float) and interval is not None:
            words.append(interval.describe())
        elif typing.get_origin(kind) is tuple:
            inner_kind = typing.get_args(kind)[0]
            element = interval.describe() if interval is not None else allowed(inner_kind, None)
            words.append(f"{len(typing.get_args(kind))} values, each {element}")
        else:
            words.append({int: "an integer", float: "a finite number", bool: "true or false", str: "a string",
                          dict: "a mapping of parameter names to values"}.get(kind, getattr(kind, "__name__", str(kind))))
    if nullable:
        words.append("None")
    return " or ".join(words)


def check(name: str, value: Any, hint: Any, interval: Interval | None = None) -> None:
    """Raise :class:`InputError` unless ``value`` is of the declared type and in range."""
    inner, nullable = _split(hint)
    if value is None and nullable:
        return
    for kind in inner:
        if typing.get_origin(kind) is Literal:
            if isinstance(value, str) and value in typing.get_args(kind):
                return
        elif kind is bool:
            if isinstance(value, bool):
                return
        elif kind is int:
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                if interval is None or interval.accepts(value):
                    return
        elif kind is float:
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value):
                if interval is None or interval.accepts(value):
                    return
        elif kind is dict:
            if isinstance(value, typing.Mapping):
                return
        elif typing.get_origin(kind) is tuple:
            kinds = typing.get_args(kind)
            if isinstance(value, tuple) and len(value) == len(kinds):
                try:
                    for element, element_kind in zip(value, kinds):
                        check(name, element, element_kind, interval)
                    return
                except InputError:
                    pass
        elif isinstance(value, kind):
            return
    raise InputError(f"parameter {name!r} must be {allowed(hint, interval)}, got {value!r}")


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` to the declared type of parameter ``name``: strings come from the CLI and
    YAML, whole floats from KFP (its JSON turns every number into a float); :func:`check` then
    validates the result."""
    inner, nullable = _split(hint)
    if nullable and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))):
        return None
    for kind in inner:
        try:
            return _coerce_to(value, kind)
        except (TypeError, ValueError):
            continue
    return value  # check() names the parameter and what is allowed


def _coerce_to(value: Any, kind: Any) -> Any:
    if typing.get_origin(kind) is Literal:
        if value in typing.get_args(kind):
            return value
        raise ValueError
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ValueError
    if kind is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, (float, np.floating)):
            if not float(value).is_integer():
                raise ValueError
            return int(value)
        return int(str(value).strip()) if isinstance(value, str) else int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    if kind is dict:
        return parse_mapping(value)
    if typing.get_origin(kind) is tuple:  # a list (KFP, YAML) or "a,b" (CLI)
        items = value.split(",") if isinstance(value, str) else list(value)
        kinds = typing.get_args(kind)
        if len(items) != len(kinds):
            raise ValueError
        return tuple(_coerce_to(item, element_kind) for item, element_kind in zip(items, kinds))
    if kind is str:
        if isinstance(value, str):
            return value
        raise ValueError
    return value


def parse_mapping(value: Any) -> dict[str, Any]:
    """A mapping from a mapping, a JSON object, or ``key=value`` pairs separated by commas."""
    if isinstance(value, typing.Mapping):
        return dict(value)
    if not isinstance(value, str):
        raise ValueError
    text = value.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError from None
        if not isinstance(parsed, dict):
            raise ValueError
        return parsed
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError
        out[key.strip()] = raw.strip()
    return out


def invalid_values(hint: Any, interval: Interval | None) -> list[Any]:
    """Values the declaration must refuse (the test suite tries each for every parameter)."""
    inner, nullable = _split(hint)
    out: list[Any] = [] if any(k is str for k in inner) else ["not-a-value"]
    if any(k is str for k in inner) and not any(k in (int, float) for k in inner):
        out.append(["not", "a", "string"])
    for kind in inner:
        if typing.get_origin(kind) is tuple:
            out.append((1.0,) * (len(typing.get_args(kind)) + 1))
            if interval is not None:
                out.extend((bad,) * len(typing.get_args(kind)) for bad in interval.invalid())
        if kind in (int, float) and interval is not None:
            out.extend(interval.invalid())
        if kind is int and not any(k is float for k in inner):
            out.append(1.5)
        if kind is float:
            out.append(math.nan)
    if not nullable and not any(k is str for k in inner):
        out.append(None)
    return out
