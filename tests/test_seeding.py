"""The one place a seed becomes randomness."""

import numpy as np
import pytest

from active_finetuning.errors import InputError
from active_finetuning.seeding import (
    check_seed,
    derived_seed,
    numpy_generator,
    python_random,
    torch_generator,
)


def test_a_seed_gives_numpys_own_generator_and_streams_are_independent():
    assert numpy_generator(7).integers(1 << 30, size=5).tolist() == np.random.default_rng(7).integers(
        1 << 30, size=5).tolist()  # the selections of earlier versions stay the same
    assert numpy_generator(7, "epoch", 1).random() != numpy_generator(7, "epoch", 2).random()
    assert derived_seed(3, 1) == derived_seed(3, 1) < 2**63 and derived_seed(3, 1) != derived_seed(1, 3)
    assert derived_seed(0, 5) == 4684988663509825201  # pinned: a resumed finetune must draw the same epochs
    assert python_random(0).sample(range(10), 3) == [6, 9, 0]
    assert torch_generator(1).initial_seed() == 1


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True, None])
def test_a_bad_seed_is_named(seed):
    with pytest.raises(InputError, match="seed must be a non-negative integer"):
        check_seed(seed)


def test_whole_floats_from_kfp_are_seeds():
    assert check_seed(4.0) == 4 and isinstance(check_seed(4.0), int)
