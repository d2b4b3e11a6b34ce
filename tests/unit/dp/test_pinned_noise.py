"""DP-SGD adds noise of the stated standard deviation, and the accountant records that noise.

A loss with zero gradient leaves only the noise in the update: after S steps of SGD with learning
rate lr, each coordinate is a sum of S Gaussians of std lr * noise_multiplier * max_grad_norm /
expected_batch_size (Opacus averages the noised sum of clipped gradients over the expected batch
size). Less noise than stated (e.g. half) while the accountant records the full value would
overstate privacy; this test measures the std over a few thousand coordinates.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import HistoryEntry, train_private

N, BATCH, LR, NOISE, CLIP = 64, 16, 0.1, 1.1, 0.8


def _zero_gradient_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs * 0.0).mean()


@pytest.mark.parametrize("noise_multiplier", [NOISE, 2 * NOISE])
def test_the_update_has_the_stated_noise_std(noise_multiplier: float) -> None:
    torch.manual_seed(0)
    model = nn.Linear(60, 50)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.randn(N, 60), torch.zeros(N, dtype=torch.long))
    loader = DataLoader(data, batch_size=BATCH, generator=torch.Generator().manual_seed(1))
    accountant = PrivacyAccountant()

    result = train_private(
        model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=LR),
        data_loader=loader, noise_multiplier=noise_multiplier, max_grad_norm=CLIP, epochs=1,
        accountant=accountant, delta=1e-5, criterion=_zero_gradient_loss,
        noise_generator=torch.Generator().manual_seed(2),
    )

    steps = result.steps
    assert steps == N // BATCH
    update = torch.cat([(result.state[k] - start[k]).ravel() for k in start])
    expected = LR * noise_multiplier * CLIP / BATCH * math.sqrt(steps)
    assert float(update.mean().abs()) < 4 * expected / math.sqrt(update.numel())
    assert float(update.std()) == pytest.approx(expected, rel=0.08)
    # the accountant records the noise that was applied
    assert accountant.history == (
        HistoryEntry(noise_multiplier=noise_multiplier, sample_rate=BATCH / N, steps=steps),
    )
