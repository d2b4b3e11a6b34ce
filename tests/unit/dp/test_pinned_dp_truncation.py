"""A client's noise share is truncated to [-T, T] by redrawing only what lies outside.

Redrawing the coordinates outside [-T, T] (and only those) leaves the share distributed as the
noise conditioned on [-T, T]: the relative frequencies inside keep the noise's own pmf. Redrawing
±T as well would shift mass towards 0. Pinned with T = 1 on Skellam noise of variance 4, whose
pmf is P(k) = sum_n Pois(n + |k|; 2) Pois(n; 2).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig


def _skellam_pmf(k: int, mu: float) -> float:
    return sum(math.exp(-2 * mu) * mu ** (n + abs(k)) * mu**n
               / (math.factorial(n + abs(k)) * math.factorial(n)) for n in range(60))


def test_the_truncated_share_is_the_noise_conditioned_on_the_offset_range() -> None:
    secagg = SecAggConfig(max_clients=10, threshold=4, clip=1.0, bit_width=32)
    wide = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=0.5, clip_norm=1.0),
                                   secagg, 2001)
    t, sensitivity = wide.noise.min_survivors, wide.noise.l2_sensitivity
    unit = dataclasses.replace(wide.noise, noise_multiplier=2 * math.sqrt(t) / sensitivity)
    assert unit.client_variance == pytest.approx(4.0)
    narrow = dataclasses.replace(wide, noise=unit, offset=1)
    rng = np.random.default_rng(21)

    noise = np.concatenate([narrow.sample_noise(rng) for _ in range(20)])

    assert set(np.unique(noise).tolist()) == {-1, 0, 1}
    inside = {k: _skellam_pmf(k, 2.0) for k in (-1, 0, 1)}
    total = sum(inside.values())
    for k, p in inside.items():  # 40k draws: standard error about 0.0025
        assert float((noise == k).mean()) == pytest.approx(p / total, abs=0.012)
