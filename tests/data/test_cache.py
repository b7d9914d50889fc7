"""Named arrays kept between runs, in a local folder or a GCS bucket (a real emulator)."""

import numpy as np
import pytest

from active_finetuning.data.cache import ArrayCache
from active_finetuning.errors import InputError


@pytest.fixture(params=["local", "gcs"])
def cache_uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "cache")
    return request.getfixturevalue("gcs_bucket") + "/cache"


def test_arrays_round_trip_and_a_missing_key_is_none(cache_uri):
    cache = ArrayCache(cache_uri)
    assert cache.load("graph") is None
    start, targets = np.arange(5, dtype=np.int64), np.array([3, 1, 4], dtype=np.int32)
    cache.save("graph", start=start, targets=targets)
    loaded = ArrayCache(cache_uri).load("graph")
    assert set(loaded) == {"start", "targets"}
    assert np.array_equal(loaded["start"], start) and loaded["targets"].dtype == np.int32


def test_an_unsupported_scheme_is_refused():
    with pytest.raises(InputError, match="cache directory"):
        ArrayCache("s3://bucket/cache")
