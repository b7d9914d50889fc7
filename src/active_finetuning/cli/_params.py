"""CLI flags derived from a parameter record's declarations (:mod:`active_finetuning.params`)."""

from __future__ import annotations

import argparse


def add_parameter_flags(group, params_class, prefix: str) -> None:
    """One ``--kebab-case`` flag per field, its help and default from the declaration."""
    for declared in params_class.declarations():
        group.add_argument(f"--{declared['name'].replace('_', '-')}", dest=f"{prefix}{declared['name']}",
                           default=None, metavar="VALUE",
                           help=f"{declared['help']}; {declared['allowed']} (default {declared['default']!r})"
                           .replace("%", "%%"))


def parameter_values(args: argparse.Namespace, prefix: str) -> dict:
    """The flags the user gave, as strings for ``Params.from_values``."""
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}
