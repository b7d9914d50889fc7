"""The labeling budget: a sample count (``500``) or a share of the pool (``"1%"``), parsed in one place.

``Budget.parse`` checks the value alone (a study plan checks its budgets before any work);
``Budget.resolve`` turns it into a count for a pool of N samples: ``int(N · pct · 0.01)``, as the
authors' scripts round.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError


def parse_percentage(text: str, what: str) -> float:
    """The number in a share of the pool such as ``"1%"``, in (0, 100]; ``what`` names the field."""
    try:
        percent = float(text.strip()[:-1])
    except ValueError:
        percent = math.nan
    if not 0 < percent <= 100:
        raise InputError(f"{what} percentage must be in (0, 100], like '1%' or '0.5%', got {text!r}")
    return percent


@dataclass(frozen=True)
class Budget:
    """Exactly one of ``count`` (samples) and ``percent`` (of the pool) is set."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, budget: int | float | str) -> "Budget":
        if isinstance(budget, str):
            text = budget.strip()
            if text.endswith("%"):
                return cls(percent=parse_percentage(text, "budget"))
            try:
                budget = int(text)
            except ValueError:
                raise InputError(f"budget {budget!r} is not a sample count (500) or a percentage like '1%'") from None
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not float(budget).is_integer():
            raise InputError(f"budget must be a whole number of samples or a percentage string, got {budget!r}")
        if budget <= 0:
            raise InputError(f"budget must be at least 1, got {int(budget)}")
        return cls(count=int(budget))

    def resolve(self, pool_size: int) -> int:
        """The number of samples to pick from a pool of ``pool_size``."""
        if self.percent is not None:
            count = int(pool_size * self.percent * 0.01)
            if count < 1:
                raise InputError(
                    f"budget '{self.percent:g}%' of a pool of {pool_size} rounds down to 0 samples; "
                    "raise the percentage or give an absolute count"
                )
            return count
        if self.count > pool_size:
            raise InputError(f"budget {self.count} exceeds the pool size {pool_size}; lower the budget")
        return self.count


def resolve_budget(budget: int | float | str, pool_size: int) -> int:
    """An absolute budget from ``500`` or ``"1%"`` for a pool of ``pool_size`` samples."""
    return Budget.parse(budget).resolve(pool_size)
