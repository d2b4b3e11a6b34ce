"""Distributed-DP edge cases found unpinned by benchmarks/mutation.py: zero noise is exactly
zero (and returns at once), and a privacy price needs at least one round."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcore.dp.distributed import DistributedNoise, sample_discrete_gaussian, skellam_epsilon
from fedcore.dp.distributed_accountant import DistributedAccountant, DistributedStep
from fedcore.protocol.distributed_dp import IntegerNoise


def test_a_discrete_gaussian_of_sigma_zero_is_all_zeros_of_the_shape() -> None:
    values = sample_discrete_gaussian(0.0, (3, 4), np.random.default_rng(0))

    assert values.shape == (3, 4) and values.dtype == np.int64
    assert not values.any()


def test_skellam_epsilon_needs_a_round_and_grows_with_rounds() -> None:
    noise = DistributedNoise(noise_multiplier=2.0, l2_sensitivity=1000.0, min_survivors=10)

    with pytest.raises(ValueError, match="rounds must be >= 1"):
        skellam_epsilon(noise, dim=100, rounds=0, delta=1e-5)
    one = skellam_epsilon(noise, dim=100, rounds=1, delta=1e-5)
    assert 0 < one < skellam_epsilon(noise, dim=100, rounds=4, delta=1e-5)


def test_the_accountant_prices_rounds_at_one_skellam_setting_as_skellam_epsilon_does() -> None:
    noise = DistributedNoise(noise_multiplier=2.0, l2_sensitivity=1000.0, min_survivors=1)
    step = DistributedStep(kind=IntegerNoise.SKELLAM, noise_multiplier=2.0, l2_sensitivity=1000.0,
                           dim=100, rounds=1)
    accountant = DistributedAccountant()
    for _ in range(3):
        accountant.record(step)

    _, epsilon = accountant.epsilon(1e-5)

    assert accountant.rounds == 3
    assert epsilon == pytest.approx(skellam_epsilon(noise, dim=100, rounds=3, delta=1e-5),
                                    rel=1e-9)
    np.testing.assert_allclose(replace(step, rounds=3).rdp(), 3 * step.rdp())
