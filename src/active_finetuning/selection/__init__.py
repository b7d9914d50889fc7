"""Selection: ``select(features, budget, method=…, seed=…, **params)`` over one registry of selectors."""

from .api import Pool, select
from .budget import Budget, resolve_budget
from .registry import Picks, get_selector, list_selectors, register_selector

__all__ = [
    "Budget",
    "Picks",
    "Pool",
    "get_selector",
    "list_selectors",
    "register_selector",
    "resolve_budget",
    "select",
]
