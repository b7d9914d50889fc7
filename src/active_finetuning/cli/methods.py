"""``active-finetuning methods``: the registered selectors, their parameters, defaults and ranges."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from ..selection.registry import get_selector, list_selectors

    for name in list_selectors():
        spec = get_selector(name)
        print(f"{name}: {spec.summary}")
        for declared in spec.params_class.declarations():
            print(f"    --{declared['name'].replace('_', '-')} (default {declared['default']!r}): "
                  f"{declared['allowed']}" + (f"; {declared['help']}" if declared["help"] else ""))
    return 0
