"""A study's grid is checked before any work."""


import pytest


def test_plan_grid_rejects_bad_studies_before_any_work():
    from active_finetuning.errors import InputError
    from active_finetuning.study.plan import plan_grid, plan_shards

    assert plan_grid(["random"], [500, "1%"], [0, 1]) == [
        {"method": "random", "budget": "500", "seed": 0}, {"method": "random", "budget": "500", "seed": 1},
        {"method": "random", "budget": "1%", "seed": 0}, {"method": "random", "budget": "1%", "seed": 1}]
    for methods, budgets, seeds, message in [
        (["nope"], ["1%"], [0], "not registered"), ([], ["1%"], [0], "methods is empty"),
        (["random"], ["ten"], [0], "not a sample count"), (["random"], ["1.5"], [0], "not a sample count"), (["random"], ["150%"], [0], r"in \(0, 100\]"),
        (["random"], ["1%"], [-1], "non-negative"), (["random", "random"], ["1%"], [0], "repeated"),
    ]:
        with pytest.raises(InputError, match=message):
            plan_grid(methods, budgets, seeds)
    assert plan_shards(3) == [0, 1, 2]
    with pytest.raises(InputError, match="num_shards"):
        plan_shards(0)
