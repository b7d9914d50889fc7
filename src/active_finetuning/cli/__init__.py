"""The command line, ``active-finetuning COMMAND``: ``main.py`` dispatches, one module per command."""

from .main import main

__all__ = ["main"]
