"""One registry of selectors, one signature (a registry by decorator, configuration as data).

A selector is a function ``fn(pool, budget, params, *, seed, progress) -> Picks`` registered under
its method name with a frozen dataclass of parameters. Everything else — the CLI's ``--method``
choices and kebab-case flags, the KFP ``select`` component, the selection metadata — reads this
registry. Adding a method touches one file.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from ..errors import InputError


@dataclass
class Picks:
    """What a selector returns: pool rows in pick order and, optionally, per-pick details."""

    indices: np.ndarray  # (B,) int64 rows of the pool, pick order
    role: np.ndarray | str = "pick"  # one role for all, or (B,) roles
    score: np.ndarray | None = None
    pseudo_class: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)  # extra metadata (e.g. final loss)
    tables: dict[str, Any] = field(default_factory=dict)  # debug tables (pyarrow), optional


@dataclass(frozen=True)
class SelectorSpec:
    name: str
    params_class: type
    fn: Callable[..., Picks]
    summary: str

    def make_params(self, **values: Any):
        """Build the parameter record, naming any unknown parameter and the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(self.params_class)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise InputError(
                f"unknown parameter {unknown[0]!r} for method {self.name!r}; its parameters are: "
                f"{', '.join(allowed) or '(none)'}"
            )
        hints = typing.get_type_hints(self.params_class)
        converted = {name: coerce(name, value, hints[name]) for name, value in values.items()}
        return self.params_class(**converted)

    def parameter_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.params_class)]


_REGISTRY: dict[str, SelectorSpec] = {}


def register_selector(name: str, params: type) -> Callable[[Callable[..., Picks]], Callable[..., Picks]]:
    """Register ``fn`` as the selector called ``name`` with parameter record class ``params``."""
    if not dataclasses.is_dataclass(params):
        raise TypeError(f"params for selector {name!r} must be a dataclass")

    def decorator(fn: Callable[..., Picks]) -> Callable[..., Picks]:
        if name in _REGISTRY:
            raise ValueError(f"selector {name!r} is registered twice")
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = SelectorSpec(name, params, fn, summary)
        return fn

    return decorator


def list_selectors() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_selector(name: str) -> SelectorSpec:
    _load_builtin()
    if name not in _REGISTRY:
        raise InputError(f"unknown method {name!r}; registered methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


# Modules whose import registers selectors; a new method adds its module name here.
SELECTOR_MODULES = ("activeft", "baselines", "bilaf", "peers")


def _load_builtin() -> None:
    import importlib
    import importlib.util

    for module in SELECTOR_MODULES:
        name = f"{__package__}.{module}"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


# ----------------------------------------------------------------------------------------------
# turning strings (CLI, KFP parameters) into typed values


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert ``value`` to the type ``hint`` of parameter ``name``; strings come from the CLI."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(name, value, inner[0]) if len(inner) == 1 else value
    if origin is Literal:
        if value not in args:
            raise InputError(f"parameter {name!r} must be one of {list(args)}, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise InputError(f"parameter {name!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise InputError(f"parameter {name!r} must be an integer, got {value!r}")
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value))
        except ValueError:
            raise InputError(f"parameter {name!r} must be an integer, got {value!r}") from None
    if hint is float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"parameter {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise InputError(f"parameter {name!r} must be a finite number, got {value!r}")
        return number
    if hint is str:
        return str(value)
    return value


def parse_percentage(text: str, what: str) -> float:
    """The number in a share of the pool such as ``"1%"``, in (0, 100]; ``what`` names the field."""
    try:
        percent = float(text.strip()[:-1])
    except ValueError:
        percent = math.nan
    if not 0 < percent <= 100:
        raise InputError(f"{what} percentage must be in (0, 100], like '1%' or '0.5%', got {text!r}")
    return percent


def require(condition: bool, name: str, value: Any, allowed: str) -> None:
    """Parameter validation with the sklearn-style message: name, value received, what is allowed."""
    if not condition:
        raise InputError(f"parameter {name!r} must be {allowed}, got {value!r}")
