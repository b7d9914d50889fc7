"""One registry of selectors, one signature (a registry by decorator, configuration as data).

A selector is a function ``fn(pool, budget, params, *, seed, progress) -> Picks`` registered under
its method name with a frozen dataclass of parameters (:class:`~.params.Params`). Everything else — the CLI's ``--method``
choices and kebab-case flags, the KFP ``select`` component, the selection metadata — reads this
registry. Adding a method touches one file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from ..params import Params


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
        """Build the parameter record from typed values, strings (CLI) or KFP's JSON numbers."""
        return self.params_class.from_values(f"method {self.name!r}", **values)

    def parameter_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.params_class)]


_REGISTRY: dict[str, SelectorSpec] = {}


def register_selector(name: str, params: type) -> Callable[[Callable[..., Picks]], Callable[..., Picks]]:
    """Register ``fn`` as the selector called ``name`` with parameter record class ``params``."""
    if not (dataclasses.is_dataclass(params) and issubclass(params, Params)):
        raise TypeError(f"params for selector {name!r} must be a dataclass deriving from Params")

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
SELECTOR_MODULES = ("activeft", "baselines", "bilaf", "typiclust", "probcover", "maxherding")


def _load_builtin() -> None:
    import importlib
    import importlib.util

    for module in SELECTOR_MODULES:
        name = f"{__package__}.{module}"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def require(condition: bool, name: str, value: Any, allowed: str) -> None:
    """Parameter validation with the sklearn-style message: name, value received, what is allowed."""
    if not condition:
        raise InputError(f"parameter {name!r} must be {allowed}, got {value!r}")
