"""One declaration per parameter: every registered method's parameters refuse every value outside
their declaration with a message that names the parameter, and take strings and KFP's floats."""

import dataclasses
import math
import typing

import pytest

from active_finetuning.errors import InputError
from active_finetuning.params import (
    Interval,
    Params,
    check,
    coerce,
    invalid_values,
    parameter,
)
from active_finetuning.selection import get_selector, list_selectors


def _declared():
    for method in list_selectors():
        params = get_selector(method).params_class
        hints = typing.get_type_hints(params)
        for field in dataclasses.fields(params):
            yield method, params, field, hints[field.name]


@pytest.mark.parametrize("method, params, field, hint", list(_declared()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_parameter_refuses_values_outside_its_declaration(method, params, field, hint):
    bad = invalid_values(hint, field.metadata.get("interval"))
    assert bad, f"{method}.{field.name}: no invalid value derived from its declaration"
    for value in bad:
        with pytest.raises(InputError, match=f"parameter '{field.name}'"):
            get_selector(method).make_params(**{field.name: value})


@pytest.mark.parametrize("method", list_selectors())
def test_defaults_are_valid_and_strings_of_the_defaults_round_trip(method):
    spec = get_selector(method)
    defaults = spec.params_class()
    as_strings = {f.name: ("none" if getattr(defaults, f.name) is None else str(getattr(defaults, f.name)))
                  for f in dataclasses.fields(defaults) if not isinstance(getattr(defaults, f.name), dict)}
    assert spec.make_params(**as_strings) == defaults


def test_kfp_floats_become_integers_and_the_range_is_named():
    params = get_selector("activeft").make_params(iterations=25.0, pool_batch=1000.0)
    assert params.iterations == 25 and isinstance(params.iterations, int) and params.pool_batch == 1000
    with pytest.raises(InputError, match=r"parameter 'iterations' must be an integer >= 0, got 2.5"):
        get_selector("activeft").make_params(iterations=2.5)
    with pytest.raises(InputError, match=r"'temperature' must be a finite number > 0, got nan"):
        get_selector("activeft").make_params(temperature=math.nan)
    with pytest.raises(InputError, match=r"'loss_form' must be one of 'official', 'paper', got 'offical'"):
        get_selector("activeft").make_params(loss_form="offical")


def test_direct_construction_is_validated_too():
    from active_finetuning.selection.activeft import ActiveFTParams

    with pytest.raises(InputError, match="parameter 'snap_topk'"):
        ActiveFTParams(snap_topk=0)
    with pytest.raises(InputError, match="parameter 'iterations'"):
        ActiveFTParams(iterations="300")  # a string is converted by make_params, never silently here


def test_unknown_parameters_list_the_known_ones():
    with pytest.raises(InputError, match="unknown parameter 'iteration' for method 'activeft'.*iterations"):
        get_selector("activeft").make_params(iteration=3)


def test_nested_parameters_are_a_mapping_from_json_or_pairs():
    spec = get_selector("bilaf")
    assert spec.make_params(core_params='{"iterations": 5}').core_params == {"iterations": 5}
    assert spec.make_params(core_params="iterations=5,lr=0.01").core_selector_params().lr == 0.01
    with pytest.raises(InputError, match="core_params.*unknown parameter 'no_such'"):
        spec.make_params(core_params={"no_such": 1})


@dataclasses.dataclass(frozen=True)
class _Example(Params):
    share: float = parameter(0.5, Interval(float, 0, 1, closed="right"))
    count: int | None = parameter(None, Interval(int, 2, 10))


@pytest.mark.parametrize("hint, interval, good, bad", [
    (float, Interval(float, 0, 1, closed="right"), [1.0, 1e-9], [0.0, 1.5, -1.0, math.inf]),
    (int, Interval(int, 2, 10), [2, 10], [1, 11]),
    (int | None, Interval(int, 1), [None, 1], [0, "x"]),
    (typing.Literal["a", "b"], None, ["a"], ["c", None]),
])
def test_intervals_and_choices(hint, interval, good, bad):
    for value in good:
        check("x", value, hint, interval)
    for value in bad:
        with pytest.raises(InputError, match="parameter 'x' must be"):
            check("x", value, hint, interval)


def test_a_record_of_declared_fields_converts_strings():
    example = _Example.from_values(share="0.25", count="none")
    assert example == _Example(share=0.25, count=None)
    assert coerce("count", "7", int | None) == 7
    with pytest.raises(InputError, match=r"'count' must be an integer in \[2, 10\] or None, got 1"):
        _Example(count=1)
