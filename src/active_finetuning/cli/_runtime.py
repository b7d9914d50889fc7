"""Process settings shared by the heavy commands: torch's thread count (select, extract, finetune),
the image-size guard of the commands that decode images (extract, finetune, evaluate), and reading an
input ahead while the command's own modules load."""

from __future__ import annotations

import argparse
import os
import threading


class ReadAhead:
    """``function(*args)`` started now in a daemon thread: ``result()`` waits for it and returns its
    value or raises its error, as a direct call would have; ``args`` tell the caller what was asked."""

    def __init__(self, function, *args):
        self.args = args
        self._value, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True)
        self._thread.start()

    def _run(self, function) -> None:
        try:
            self._value = function(*self.args)
        except BaseException as err:  # handed to ``result``, in the caller's thread
            self._error = err

    def result(self):
        """The value (handed over: this object keeps no reference to it), or the error raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        value, self._value = self._value, None
        return value


def add_image_limit(parser: argparse.ArgumentParser) -> None:
    from ..data.images import DEFAULT_MAX_PIXELS

    parser.add_argument("--max-image-pixels", type=int, metavar="N",
                        help=f"refuse images above N pixels before decoding them (default {DEFAULT_MAX_PIXELS:,}, "
                             "a guard against decompression bombs)")


def apply_image_limit(args: argparse.Namespace) -> None:
    """Set the limit for this process and the workers it starts."""
    from ..data.images import MAX_PIXELS_ENV
    from ..errors import InputError

    if args.max_image_pixels is not None:
        if args.max_image_pixels < 1:
            raise InputError(f"--max-image-pixels must be a positive integer, got {args.max_image_pixels}")
        os.environ[MAX_PIXELS_ENV] = str(args.max_image_pixels)


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads``: torch's intra-op threads for this process (default: the CPUs it may use,
    :func:`~active_finetuning.resources.available_cpus`, not the host's count torch assumes)."""
    import torch

    from ..errors import InputError
    from ..resources import default_threads

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    elif torch.get_num_threads() > default_threads():
        torch.set_num_threads(default_threads())
