"""The one exception type for bad input, so that callers (CLI, components) can report it cleanly."""


class InputError(ValueError):
    """Bad input: the message names the field, what was found and how to fix it."""
