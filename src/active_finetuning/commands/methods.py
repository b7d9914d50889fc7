"""``active-finetuning methods``: the registered selectors and their parameter defaults."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..selection.registry import get_selector, list_selectors

    for name in list_selectors():
        spec = get_selector(name)
        print(f"{name}: {spec.summary}")
        for field in dataclasses.fields(spec.params_class):
            print(f"    --{field.name.replace('_', '-')} (default {field.default!r})")
    return 0
