import subprocess
import sys

import pytest
import torch

from active_finetuning.selection.optim import Adam, cosine_learning_rates


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scheduler", ["none", "cosine"])
def test_adam_takes_torch_adams_steps_bit_for_bit(dtype, scheduler):
    generator = torch.Generator().manual_seed(1)
    start = torch.randn(40, 24, generator=generator, dtype=dtype)
    grads = [torch.randn(40, 24, generator=generator, dtype=dtype) * 10.0 ** (k % 5 - 2) for k in range(60)]
    theirs = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theirs], lr=3e-3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=60, eta_min=1e-6)
    ours = start.clone()
    mine = Adam(ours, 3e-3)
    rates = cosine_learning_rates(3e-3, 60)
    for step, grad in enumerate(grads):
        theirs.grad = grad.clone()
        optimizer.step()
        if scheduler == "cosine":
            assert rates[step] == optimizer.param_groups[0]["lr"]
            annealing.step()
            mine.lr = rates[step]
        mine.step(grad)
        assert torch.equal(ours, theirs.detach()), step


@pytest.mark.parametrize("steps", [1, 2, 7, 300])
def test_cosine_rates_are_the_schedulers_floats(steps):
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=1e-6)
    expected = []
    for _ in range(steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        annealing.step()
    assert cosine_learning_rates(1e-3, steps) == expected


def test_selection_does_not_import_torch_dynamo():
    # torch.optim.Adam would: about 2 s of every select on two cores.
    program = ("import sys, numpy as np; from active_finetuning.selection import select; "
               "select(np.random.default_rng(0).normal(size=(300, 8)).astype('float32'), 10, 'activeft', "
               "seed=0, iterations=5, scheduler='cosine'); print('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
