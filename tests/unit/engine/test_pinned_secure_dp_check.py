"""Distributed-DP noise is checked at load for the smallest real secure round.

A secure round's dimension is the model's element count plus the weight slot, so at least 2.
The load-time check once used dim=1, so a setting that fits only dim=1 was accepted and then
failed every round when the engine opened it. Now such a setting is refused when the config
is built, and a setting accepted there opens its round for a one-parameter model.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig
from fedcore.strategy import FedAvg

NUMERIC = SecAggConfig(threshold=1, max_clients=100, clip=1.0, bit_width=20)
FITS_DIM_1_ONLY = DistributedDPConfig(noise_multiplier=1.98, clip_norm=1.0)
FITS_DIM_2 = DistributedDPConfig(noise_multiplier=1.972, clip_norm=1.0)  # not dim=3


def test_the_setting_fits_a_round_of_dim_1_but_not_2() -> None:
    NoisyEncoding.for_round(FITS_DIM_1_ONLY, NUMERIC, dim=1)
    with pytest.raises(ValueError, match="quantisation levels"):
        NoisyEncoding.for_round(FITS_DIM_1_ONLY, NUMERIC, dim=2)


def test_the_settings_bracket_the_smallest_round() -> None:
    NoisyEncoding.for_round(FITS_DIM_2, NUMERIC, dim=2)
    with pytest.raises(ValueError, match="quantisation levels"):
        NoisyEncoding.for_round(FITS_DIM_2, NUMERIC, dim=3)


def test_a_setting_no_real_round_fits_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="quantisation levels"):
        SecureAggregationConfig(bit_width=20, max_clients=100, distributed_dp=FITS_DIM_1_ONLY)


def test_a_setting_accepted_at_load_opens_a_round_for_one_parameter() -> None:
    secure = SecureAggregationConfig(bit_width=20, max_clients=100, distributed_dp=FITS_DIM_2)
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, secagg=secure,
                     train=SelectionConfig(count=3, min_available=3)),
        FedAvg(), initial_params={"w": np.zeros(1, np.float32)})
    for cid in ("a", "b", "c"):
        engine.join(cid, now=0.0)
    engine.tick(0.0)
    assert engine.round_number == 1
