"""``python -m active_finetuning.cli``: the same as the ``active-finetuning`` command."""

import sys

from .main import main

sys.exit(main())
