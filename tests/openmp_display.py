"""What torch's OpenMP runtime (libgomp) says it uses, from its start-up display (``OMP_DISPLAY_ENV=VERBOSE``)."""

from active_finetuning.resources import OPENMP_WAITING


def waiting_settings(display: str) -> dict:
    """The ``OPENMP_WAITING`` variables as libgomp printed them (``None`` for one it did not print)."""
    settings = dict(line.strip().replace("'", "").split(" = ", 1) for line in display.splitlines() if " = " in line)
    return {name: settings.get(name) for name in OPENMP_WAITING}
