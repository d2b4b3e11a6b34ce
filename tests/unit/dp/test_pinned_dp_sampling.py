"""DP-SGD details found unpinned by the seed-5 sample: Poisson sampling draws empty batches,
which count as steps but not in the mean loss (the loss of an empty batch is NaN); the target
search returns the noise whose ε is within Opacus' tolerance of 0.01 below the target (no more
noise than that); and an update whose norm is exactly the clip norm is encoded unscaled."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import noise_multiplier_for_target, train_private
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.quantize import append_weight


def test_empty_poisson_batches_count_as_steps_but_not_in_the_loss() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    # 60 batches of 1: sample rate 1/60, so about a third of the Poisson batches are empty
    loader = DataLoader(TensorDataset(torch.randn(60, 3), torch.randint(0, 2, (60,))),
                        batch_size=1)
    result = train_private(model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
                           data_loader=loader, epochs=1, accountant=PrivacyAccountant(),
                           delta=1e-5, noise_multiplier=1.0, max_grad_norm=1.0,
                           noise_generator=torch.Generator().manual_seed(1))
    assert result.steps == 60
    assert math.isfinite(result.loss) and result.loss > 0


def _epsilon(sigma: float, sample_rate: float, steps: int, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(sigma, sample_rate, steps)]
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize(("target", "sample_rate", "steps"), [
    (1.0, 0.05, 50), (2.0, 0.01, 1000), (3.0, 0.01, 1000), (5.0, 0.05, 50)])
def test_the_noise_for_a_target_spends_within_0_01_of_it(target: float, sample_rate: float,
                                                         steps: int) -> None:
    sigma = noise_multiplier_for_target(target_epsilon=target, delta=1e-5,
                                        sample_rate=sample_rate, steps=steps)
    spent = _epsilon(sigma, sample_rate, steps, 1e-5)
    assert target - 0.01 <= spent <= target


def test_an_update_of_exactly_the_clip_norm_is_encoded_unscaled() -> None:
    secagg = SecAggConfig(max_clients=4, threshold=2, clip=1.0, bit_width=64)
    encoding = NoisyEncoding.for_round(
        DistributedDPConfig(noise_multiplier=0.001, clip_norm=1.0), secagg, 17)
    update = np.full(16, 0.25)  # norm exactly 1.0 = C
    assert float(np.linalg.norm(update)) == 1.0
    for seed in range(3):
        words = encoding.encode(update, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)  # the same draws, in the same order
        quantised = encoding.quantizer.quantize(append_weight(update, 1.0, clip=1.0), rng)
        expected = quantised.astype(np.int64) + encoding.sample_noise(rng) + encoding.offset
        np.testing.assert_array_equal(words.astype(np.int64), expected)
