"""Chunked nearest-neighbour searches against full sorts and masked dense maxima."""

import numpy as np
import torch

from active_finetuning.selection.neighbours import (
    nearest_neighbours,
    nearest_other_group,
)
from tests.conftest import unit_mixture


def test_chunked_neighbours_equal_a_full_sort():
    points, _ = unit_mixture(257)
    rows, similarity = nearest_neighbours(points, 7, chunk=50)
    dense = (points @ points.T).numpy()
    np.fill_diagonal(dense, -np.inf)
    expected = np.argsort(-dense, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(rows.numpy(), expected)
    np.testing.assert_allclose(similarity.numpy(), np.take_along_axis(dense, expected, 1), rtol=1e-6)
    queries = points[:5]
    rows_q, _ = nearest_neighbours(points, 3, queries=queries, chunk=2)
    assert rows_q[:, 0].tolist() == [0, 1, 2, 3, 4]  # a query that is in the pool finds itself first


def test_nearest_other_group_matches_a_masked_dense_max():
    points, _ = unit_mixture(200)
    groups = torch.from_numpy(np.random.default_rng(0).integers(0, 4, 200))
    rows = torch.arange(0, 200, 3)
    got = nearest_other_group(points, groups, rows, chunk=16).numpy()
    dense = (points @ points.T).numpy()
    mask = groups.numpy()[:, None] != groups.numpy()[None, :]
    expected = np.where(mask, dense, -np.inf).max(axis=1)[rows.numpy()]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
