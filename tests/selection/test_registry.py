"""One registry of selectors, one signature."""

from dataclasses import dataclass

import pytest

from active_finetuning.errors import InputError
from active_finetuning.params import Params
from active_finetuning.selection import get_selector, list_selectors, register_selector


def test_the_builtin_methods_are_registered_with_a_summary():
    assert list_selectors() == sorted(["activeft", "bilaf", "kcenter", "kmeans", "maxherding", "probcover", "random",
                                       "typiclust"])
    for method in list_selectors():
        spec = get_selector(method)
        assert spec.summary and issubclass(spec.params_class, Params)


def test_a_selector_needs_a_declared_parameter_record_and_a_unique_name():
    @dataclass(frozen=True)
    class Plain:
        k: int = 1

    with pytest.raises(TypeError, match="deriving from Params"):
        register_selector("plain", Plain)
    with pytest.raises(ValueError, match="registered twice"):
        register_selector("random", get_selector("random").params_class)(lambda *a, **k: None)


def test_an_unknown_method_lists_the_registered_ones():
    with pytest.raises(InputError, match="unknown method 'activeFT'.*activeft, bilaf"):
        get_selector("activeFT")
