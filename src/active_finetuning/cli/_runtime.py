"""Process settings shared by the heavy commands: torch's thread count (select, extract, finetune)
and the image-size guard of the commands that decode images (extract, finetune, evaluate)."""

from __future__ import annotations

import argparse
import os


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
