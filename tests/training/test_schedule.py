"""Learning-rate schedule and optimiser parameter groups."""

import pytest
import torch
from torch import nn

from funduslab.training.module import FitOptions, FundusTask, lr_lambda


def test_warmup_then_cosine_reaches_zero():
    f = lr_lambda("cosine", warmup_steps=10, total_steps=110)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0, abs=1e-9)
    values = [f(s) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_step_schedule_drops_tenfold_twice():
    f = lr_lambda("step", warmup_steps=0, total_steps=100)
    assert f(10) == 1.0 and f(60) == pytest.approx(0.1) and f(90) == pytest.approx(0.01)


def test_unknown_schedule_names_valid_ones():
    with pytest.raises(ValueError, match="cosine"):
        lr_lambda("linear", 0, 10)


def test_backbone_and_head_get_their_own_learning_rates():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    task = FundusTask(net, nn.BCEWithLogitsLoss(), ["a", "b"],
                      FitOptions(lr=1e-2, backbone_lr=1e-4, epochs=1),
                      head_params=list(net[1].parameters()))

    class _T:
        estimated_stepping_batches = 10

    task._trainer = _T()  # the optimiser only needs the step count
    opt = task.configure_optimizers()["optimizer"]
    lrs = sorted(g["initial_lr"] for g in opt.param_groups)
    assert lrs == [1e-4, 1e-2]
    head_group = next(g for g in opt.param_groups if g["initial_lr"] == 1e-2)
    assert {id(p) for p in head_group["params"]} == {id(p) for p in net[1].parameters()}
    assert torch.is_tensor(head_group["params"][0])
