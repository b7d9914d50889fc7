"""Values as KFP hands them to a component."""

from __future__ import annotations

from typing import Any, Mapping


def from_kfp(values: Any) -> Any:
    """Undo KFP's JSON round trip, which turns every number in a dict or list parameter into a float."""
    if isinstance(values, Mapping):
        return {k: from_kfp(v) for k, v in values.items()}
    if isinstance(values, list):
        return [from_kfp(v) for v in values]
    if isinstance(values, float) and values.is_integer():
        return int(values)
    return values
