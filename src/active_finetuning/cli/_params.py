"""CLI flags derived from a parameter record's declarations (:mod:`active_finetuning.params`)."""

from __future__ import annotations

import argparse
import types
import typing


def add_parameter_flags(group, params_class, prefix: str) -> None:
    """One ``--kebab-case`` flag per field, its help and default from the declaration: a boolean is
    ``--flag/--no-flag``, a pair takes two values, everything else one value (``none`` for None)."""
    hints = typing.get_type_hints(params_class)
    for declared in params_class.declarations():
        name = declared["name"]
        text = f"{declared['help']}; {declared['allowed']} (default {declared['default']!r})".replace("%", "%%")
        options = dict(dest=f"{prefix}{name}", default=None, help=text)
        hint = hints[name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kinds = [k for k in (typing.get_args(hint) if union else [hint]) if k is not type(None)]
        if kinds == [bool]:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kinds[0]) is tuple:
            options.update(nargs=len(typing.get_args(kinds[0])), metavar="VALUE")
        else:
            options["metavar"] = "VALUE"
        group.add_argument(f"--{name.replace('_', '-')}", **options)


def parameter_values(args: argparse.Namespace, prefix: str) -> dict:
    """The flags the user gave, for ``Params.from_values`` (which converts the strings)."""
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}
