"""A client's limit is the smaller of its own epsilon budget and the task's target epsilon.

Both are set in each test, far apart, so that enforcing the larger of the two is seen: a task
past the smaller limit is declined for good, spends nothing and leaves the model untouched.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.app import DeclineTask
from fedcore.client.torch_app import TorchApp
from fedcore.protocol.messages import LocalDPConfig, TrainConfig

DELTA = 1e-5


def _app(budget: float) -> TorchApp:
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    loader = DataLoader(TensorDataset(x, y), batch_size=10)
    return TorchApp(nn.Linear(4, 2), train_loader=loader, privacy_budget=budget)


def _task(target: float) -> TrainConfig:
    dp = LocalDPConfig(target_epsilon=target, planned_rounds=1, delta=DELTA, max_grad_norm=1.0)
    return TrainConfig(local_epochs=1, batch_size=10, learning_rate=0.1, local_dp=dp)


def test_a_small_own_budget_refuses_a_task_with_a_large_target() -> None:
    app = _app(budget=0.5)
    before = app.get_parameters()
    config = _task(target=100.0)
    plan = app.plan_local_dp(config)
    assert plan is not None and plan.epsilon_after > 0.5  # the task would pass the budget

    with pytest.raises(DeclineTask) as declined:
        app.fit(before, config)

    assert declined.value.permanent
    assert app.accountant.history == ()  # nothing spent
    assert app.accountant.epsilon(DELTA) == 0.0
    for name, value in app.get_parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_a_small_target_refuses_once_spent_even_with_a_large_own_budget() -> None:
    app = _app(budget=100.0)
    config = _task(target=0.5)
    app.fit(app.get_parameters(), config)  # the first task spends the whole target
    spent = app.accountant.epsilon(DELTA)
    assert 0.3 < spent <= 0.5 + 1e-6
    history = app.accountant.history

    with pytest.raises(DeclineTask) as declined:
        app.fit(app.get_parameters(), config)

    assert declined.value.permanent
    assert app.accountant.history == history


def test_a_task_within_both_limits_trains_and_spends() -> None:
    app = _app(budget=100.0)

    result = app.fit(app.get_parameters(), _task(target=2.0))

    assert 0 < result.metrics["epsilon"] <= 2.0 + 1e-6
    assert app.accountant.epsilon(DELTA) == pytest.approx(result.metrics["epsilon"])
