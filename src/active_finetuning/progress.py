"""Progress bars for long work (tqdm on stderr; silent when disabled)."""

from __future__ import annotations

import weakref
from typing import Iterable

_OPEN: weakref.WeakSet = weakref.WeakSet()


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True, total: int | None = None, unit: str = "it"):
    from tqdm.auto import tqdm

    bar = tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True)
    _OPEN.add(bar)
    return bar


def close_all() -> None:
    """Erase the bars still open (an interrupted loop), so that a message starts on a clean line."""
    for bar in list(_OPEN):
        bar.close()
