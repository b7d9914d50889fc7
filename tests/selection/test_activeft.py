import math

import numpy as np
import pytest
import torch

from active_finetuning.data.artifacts import FeatureTable, write_features
from active_finetuning.errors import InputError
from active_finetuning.selection import select
from active_finetuning.selection.activeft import (
    ActiveFTParams,
    _assigned_sum,
    _blockwise,
    _centroid_gradient,
)
from active_finetuning.selection.api import unit_rows
from tests.conftest import gaussian_mixture, run_cli, with_threads
from tests.oracles.activeft_dense import dense_activeft


def unit(x):
    """The unit rows the selector sees (normalised in float64, stored in float32)."""
    return unit_rows(np.asarray(x))


@pytest.mark.parametrize("n, dim, clusters, budget, iterations", [
    (3000, 64, 20, 50, 300),
    (3000, 32, 40, 300, 120),
])
def test_parity_with_dense_reference_index_for_index(n, dim, clusters, budget, iterations):
    # The reference trajectory computed in float64 (float32 rounding alone parts the float32
    # reference from it on one pick of the first pool, at iteration ~200): ours, in float32,
    # follows the float64 one pick for pick, and shares all but at most one with the float32 one.
    features, _ = gaussian_mixture(n, dim, clusters, seed=7)
    expected, expected_loss = dense_activeft(unit(features), budget, seed=11, iterations=iterations,
                                             dtype=torch.float64)
    float32_reference, _ = dense_activeft(unit(features), budget, seed=11, iterations=iterations)
    selection = select(features, budget, "activeft", seed=11, iterations=iterations)
    assert selection.indices.tolist() == expected
    assert len(set(selection.indices.tolist()) & set(float32_reference)) >= budget - 1
    assert selection.metadata["info"]["final_loss"] == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("assignment, screen", [("auto", "auto"), ("full", "bfloat16"), ("full", "none")])
def test_float64_precision_equals_the_float64_reference_index_for_index(assignment, screen):
    # On this pool the float32 reference and its float64 run part on one pick: float64 is the
    # mode that can be held to the exact trajectory, and it is, with the same loss to 1e-12.
    features, _ = gaussian_mixture(3000, 64, 20, seed=7)
    expected, expected_loss = dense_activeft(unit(features), 50, seed=11, iterations=300, dtype=torch.float64)
    assert expected != dense_activeft(unit(features), 50, seed=11, iterations=300)[0]
    selection = select(features, 50, "activeft", seed=11, iterations=300, precision="float64",
                       assignment=assignment, screen=screen)
    assert selection.indices.tolist() == expected
    assert selection.metadata["info"]["final_loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert selection.metadata["params"]["precision"] == "float64"


def _autograd_gradient(features, centroids, params):
    theta = centroids.clone().requires_grad_(True)
    tau = params.temperature
    sim = features @ theta.T / tau
    m, k = sim.max(dim=1)
    if params.loss_form == "official":
        gram = theta.detach() @ theta.T / tau
        log_r = torch.logsumexp(gram, dim=0)
        loss = torch.nn.functional.softplus(np.log(params.balance) + log_r[k] - m).mean()
    else:
        gram = theta @ theta.T / tau
        gram = gram - torch.diag(torch.full((len(theta),), float("inf")))
        loss = -m.mean() + params.balance * torch.logsumexp(gram, dim=1).mean()
    loss.backward()
    return theta.grad, float(loss.detach())


@pytest.mark.parametrize("loss_form", ["official", "paper"])
@pytest.mark.parametrize("chunk_size", [None, 7])
def test_closed_form_gradient_matches_autograd(loss_form, chunk_size):
    features = unit(gaussian_mixture(500, 12, 5, seed=2)[0])
    centroids = features[:30].clone()
    params = ActiveFTParams(loss_form=loss_form, balance=0.7, chunk_size=chunk_size)
    grad, loss = _centroid_gradient(features, centroids, None, params)
    expected_grad, expected_loss = _autograd_gradient(features, centroids, params)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert loss == pytest.approx(expected_loss, rel=1e-5)


@pytest.mark.parametrize("loss_form", ["official", "paper"])
def test_float64_gradient_matches_float64_autograd(loss_form):
    features = unit(gaussian_mixture(500, 12, 5, seed=2)[0]).double()
    centroids = features[:30].clone()
    params = ActiveFTParams(loss_form=loss_form, balance=0.7, chunk_size=7, precision="float64")
    grad, loss = _centroid_gradient(features, centroids, None, params)
    expected_grad, expected_loss = _autograd_gradient(features, centroids, params)
    assert grad.dtype == torch.float64
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-13)
    assert loss == pytest.approx(expected_loss, rel=1e-12)


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_gram_chunks_give_the_same_gradient_bits_as_one_block(precision):
    # Every product is correctly rounded (float32) or error-free sliced (float64, the centroids sliced
    # once for all chunks): the chunk size cannot change a bit of the official loss's gradient.
    features = unit(gaussian_mixture(500, 12, 5, seed=2)[0]).to(getattr(torch, precision))
    centroids = features[:30].clone()
    whole = _centroid_gradient(features, centroids, None, ActiveFTParams(precision=precision))
    chunked = _centroid_gradient(features, centroids, None, ActiveFTParams(precision=precision, chunk_size=7))
    assert torch.equal(whole[0], chunked[0]) and whole[1] == chunked[1]


@pytest.mark.parametrize("option", [
    {"pool_batch": 500}, {"renormalize": "project"}, {"scheduler": "cosine", "lr": 0.01},
    {"pool_batch": 700, "renormalize": "project", "scheduler": "cosine"},
])
def test_options_equal_the_dense_reference_with_the_same_options(option):
    features, _ = gaussian_mixture(2000, 16, 10, seed=3)
    expected, expected_loss = dense_activeft(unit(features), 40, seed=0, iterations=50, **option)
    base = select(features, 40, "activeft", seed=0, iterations=50)
    selection = select(features, 40, "activeft", seed=0, iterations=50, **option)
    for key, value in option.items():
        assert selection.metadata["params"][key] == value
    assert selection.indices.tolist() == expected
    assert selection.metadata["info"]["final_loss"] == pytest.approx(expected_loss, rel=1e-5)
    # the option does change the trajectory
    assert selection.metadata["info"]["final_loss"] != base.metadata["info"]["final_loss"]


def test_pool_batch_larger_than_pool_is_clamped():
    features, _ = gaussian_mixture(300, 8, 3)
    full = select(features, 10, "activeft", seed=0, iterations=20)
    clamped = select(features, 10, "activeft", seed=0, iterations=20, pool_batch=10_000)
    assert full.indices.tolist() == clamped.indices.tolist()


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_byte_identical_with_one_and_two_threads(tmp_path, precision):
    features, _ = gaussian_mixture(4000, 48, 30, seed=9)
    write_features(FeatureTable.from_array(features), str(tmp_path / "f.parquet"))
    outputs = []
    for threads in (1, 2):
        out = tmp_path / f"s{threads}.parquet"
        result = run_cli("select", "--features", str(tmp_path / "f.parquet"), "--budget", "2%",
                         "--method", "activeft", "--seed", "5", "--iterations", "100", "--precision", precision,
                         "--threads", str(threads), "--out", str(out), "--no-progress")
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("function", [torch.sigmoid, torch.nn.functional.softplus])
def test_elementwise_blocks_round_the_same_with_one_and_two_threads(function):
    # Values that torch's scalar and vectorised code round differently, 50,008 of them: with two
    # threads one call splits at element 25,004 and the elements before the split take the scalar path.
    candidates = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 3
    scalar = torch.stack([function(value[None])[0] for value in candidates])
    unstable = candidates[function(candidates) != scalar]
    values = unstable.repeat(50_008 // len(unstable) + 1)[:50_008]
    one, two = (with_threads(threads, lambda: _blockwise(function, values)) for threads in (1, 2))
    assert torch.equal(one, two)


def test_gradient_is_bitwise_identical_with_one_and_two_threads():
    generator = torch.Generator().manual_seed(4)
    features = unit(torch.randn(50_008, 16, generator=generator))
    centroids = unit(features[:500] + 0.3 * torch.randn(500, 16, generator=generator))
    (grad_1, loss_1), (grad_2, loss_2) = (
        with_threads(threads, lambda: _centroid_gradient(features, centroids, None, ActiveFTParams()))
        for threads in (1, 2))
    assert torch.equal(grad_1, grad_2)
    assert loss_1 == loss_2


def test_float64_pull_sums_each_centroids_rows_with_their_weights_the_same_bits_on_any_threads():
    # Float32 rows: tests/selection/test_pull.py.
    dtype = torch.float64
    generator = torch.Generator().manual_seed(6)
    features = unit(torch.randn(9000, 1280, generator=generator)).to(dtype)
    subset = torch.sort(torch.randperm(9000, generator=generator)[:6000]).values
    assigned = torch.randint(0, 40, (6000,), generator=generator) * 2  # odd centroids get no rows
    weight = torch.rand(6000, generator=generator, dtype=dtype)
    expected = torch.zeros(81, 1280, dtype=torch.float64).index_add_(
        0, assigned, features[subset].double() * weight.double()[:, None])
    one, two = (with_threads(threads, lambda: _assigned_sum(features, subset, assigned, weight, 81))
                for threads in (1, 2))
    assert one.dtype == dtype and one.shape == (81, 1280)
    assert torch.equal(one, two)
    assert torch.allclose(one.double(), expected, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-12)
    assert not one[1::2].any()


@pytest.mark.parametrize("pool_batch", [None, 700])
def test_every_assignment_path_gives_the_same_selection_bit_for_bit(pool_batch):
    features, _ = gaussian_mixture(1500, 40, 25, seed=12)
    runs = {(assignment, screen): select(features, 60, "activeft", seed=3, iterations=60, pool_batch=pool_batch,
                                          assignment=assignment, screen=screen)
            for assignment in ("auto", "bounded", "full") for screen in ("auto", "bfloat16", "none")}
    reference = runs[("full", "none")]
    for (assignment, screen), selection in runs.items():
        assert selection.indices.tolist() == reference.indices.tolist(), (assignment, screen)
        assert selection.metadata["info"]["final_loss"] == reference.metadata["info"]["final_loss"]
    path = runs[("auto", "auto")].metadata["info"]["assignment"]
    assert path["mode"] == ("bounded" if pool_batch is None else "full")
    assert path["scorer"] in ("gemm", "bfloat16-screen")
    if pool_batch is None:
        assert 0 < path["rows_scored"] < 0.5  # the bounds skip most rows


def test_non_finite_loss_is_refused_with_the_fix():
    features, _ = gaussian_mixture(300, 8, 3, seed=1)
    with pytest.raises(InputError, match="not finite.*raise temperature or lower lr"):
        select(features, 10, "activeft", seed=0, iterations=5, temperature=1e-300)


@pytest.mark.parametrize("name, value", [("lr", math.inf), ("temperature", math.nan), ("balance", math.inf)])
def test_non_finite_parameters_are_refused(name, value):
    features, _ = gaussian_mixture(300, 8, 3, seed=1)
    with pytest.raises(InputError, match=name):
        select(features, 10, "activeft", seed=0, iterations=5, **{name: value})


def test_snapping_from_the_bounds_gives_the_selection_of_the_pass_over_the_pool():
    # Every assignment path follows the same trajectory bit for bit; only the snap differs between these two.
    features, _ = gaussian_mixture(6000, 32, 20, seed=14)
    bounded = select(features, 30, "activeft", seed=5, iterations=300)
    full = select(features, 30, "activeft", seed=5, iterations=300, assignment="full", screen="none")
    assert (bounded.metadata["info"]["snap"], full.metadata["info"]["snap"]) == ("bounds", "pool")
    assert bounded.indices.tolist() == full.indices.tolist()
