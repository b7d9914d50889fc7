"""The labeling budget: a count or a share of the pool, parsed in one place, rounded as the authors' scripts round."""

import pytest

from active_finetuning.errors import InputError
from active_finetuning.selection import Budget, resolve_budget


def test_percentage_budget_follows_the_official_rounding():
    assert resolve_budget("1%", 50_000) == 500
    assert resolve_budget("0.5%", 50_000) == 250
    assert resolve_budget("1%", 1_281_167) == 12_811
    assert resolve_budget("2%", 1_281_167) == 25_623
    assert resolve_budget("100%", 7) == 7


@pytest.mark.parametrize("budget, expected", [(500, Budget(count=500)), ("500", Budget(count=500)),
                                              (500.0, Budget(count=500)), (" 1% ", Budget(percent=1.0)),
                                              ("0.5%", Budget(percent=0.5))])
def test_counts_and_shares_parse_alone(budget, expected):
    assert Budget.parse(budget) == expected


@pytest.mark.parametrize("budget, message", [("ten", "not a sample count"), ("1.5", "not a sample count"),
                                             (0, "at least 1"), (-3, "at least 1"), (True, "whole number"),
                                             (2.5, "whole number"), ("150%", r"\(0, 100\]"), ("0%", r"\(0, 100\]"),
                                             ("%", r"\(0, 100\]"), (None, "whole number")])
def test_bad_budgets_name_the_field_before_any_pool_is_read(budget, message):
    with pytest.raises(InputError, match=message):
        Budget.parse(budget)


def test_a_budget_is_resolved_against_the_pool():
    with pytest.raises(InputError, match="rounds down to 0 samples"):
        resolve_budget("0.5%", 100)
    with pytest.raises(InputError, match="exceeds the pool size 7"):
        resolve_budget(8, 7)
    assert Budget.parse("2%").resolve(1_281_167) == 25_623
