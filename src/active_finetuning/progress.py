"""Progress bars for long work (tqdm on stderr; silent when disabled)."""

from __future__ import annotations

from typing import Iterable


def progress_bar(iterable: Iterable, desc: str, enabled: bool = True, total: int | None = None, unit: str = "it"):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not enabled, leave=False, dynamic_ncols=True)
