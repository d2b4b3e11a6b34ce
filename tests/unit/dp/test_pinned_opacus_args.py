"""DP-SGD's arguments at their boundaries (found unpinned by benchmarks/mutation.py): a refusal
is a ValueError raised before any step, so the model and the accountant are untouched."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import HistoryEntry, Mechanism, epsilon, train_private

HISTORY = [HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=10)]


@pytest.mark.parametrize("delta", [0.0, 1.0, -0.1, 1.5])
def test_epsilon_refuses_a_delta_outside_the_open_unit_interval(delta: float) -> None:
    with pytest.raises(ValueError, match="delta must be in"):
        epsilon(HISTORY, delta=delta, mechanism=Mechanism.RDP)


def test_epsilon_accepts_a_delta_just_inside() -> None:
    assert math.isfinite(epsilon(HISTORY, delta=0.999, mechanism=Mechanism.RDP))


@pytest.mark.parametrize(("arguments", "message"), [
    ({"max_grad_norm": 0.0}, "max_grad_norm"),
    ({"proximal_mu": -0.5}, "proximal_mu"),
    ({"noise_multiplier": -1.0}, "noise_multiplier"),
])
def test_bad_arguments_are_refused_before_any_step(arguments: dict[str, float],
                                                   message: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(TensorDataset(torch.randn(20, 3), torch.randint(0, 2, (20,))),
                        batch_size=5)
    accountant = PrivacyAccountant()
    settings: dict[str, float] = {"noise_multiplier": 1.0, "max_grad_norm": 1.0,
                                  "proximal_mu": 0.0, **arguments}

    with pytest.raises(ValueError, match=message):
        train_private(model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
                      data_loader=loader, epochs=1, accountant=accountant, delta=1e-5,
                      **settings)  # type: ignore[arg-type]

    assert accountant.history == ()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
