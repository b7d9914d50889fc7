"""Active finetuning: pick the samples worth labeling (ActiveFT, BiLAF, baselines), finetune, evaluate."""

__version__ = "0.1.0"


def select(*args, **kwargs):
    """See :func:`active_finetuning.selection.select` (imported lazily: torch loads on first use)."""
    from .selection import select as _select

    return _select(*args, **kwargs)


def list_selectors():
    from .selection import list_selectors as _list

    return _list()
