"""The distributed-DP encoding end to end, where the dp tests never went: the sum of t clients'
words decodes to their mean with noise of exactly the reported std (z·Δ₂ over t survivors),
the truncation redraws only what lies beyond ±T, and the refusals (wrong length, non-finite
values, no survivors) come before anything is drawn."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig

SECAGG = SecAggConfig(max_clients=10, threshold=4, clip=1.0, bit_width=32)
DIM = 2001  # 2000 values and the weight slot
CONFIG = DistributedDPConfig(noise_multiplier=0.5, clip_norm=1.0)


def _encoding() -> NoisyEncoding:
    return NoisyEncoding.for_round(CONFIG, SECAGG, DIM)


def test_the_sum_of_t_clients_decodes_to_their_mean_with_the_reported_noise() -> None:
    encoding = _encoding()
    rng = np.random.default_rng(11)
    t = SECAGG.threshold
    updates = [rng.uniform(-0.01, 0.01, DIM - 1) for _ in range(t)]
    modulus = 1 << SECAGG.bit_width
    total = np.zeros(DIM, np.uint64)
    for u in updates:
        total = (total + encoding.encode(u, rng).astype(np.uint64)) % modulus
    mean = encoding.decode_mean(total, t)
    assert mean.shape == (DIM - 1,)
    error = (mean - np.mean(updates, axis=0)) * t  # the noise of the sum, in update units
    report = encoding.measurements(survivors=t)
    # at exactly t survivors the sum's noise std is z * Δ₂ (in update units: / scale)
    assert report["noise_std_sum"] == pytest.approx(report["noise_std"])
    assert report["noise_std"] == pytest.approx(
        CONFIG.noise_multiplier * encoding.noise.l2_sensitivity / encoding.scale)
    assert float(error.std()) == pytest.approx(report["noise_std_sum"], rel=0.1)
    assert abs(float(error.mean())) < 5 * report["noise_std_sum"] / math.sqrt(DIM - 1)
    assert report["noise_std_mean"] == pytest.approx(report["noise_std_sum"] / t)
    assert report["min_survivors"] == t and report["clip_norm"] == CONFIG.clip_norm


def test_more_survivors_add_more_noise_shares() -> None:
    encoding = _encoding()
    four, eight = encoding.measurements(survivors=4), encoding.measurements(survivors=8)
    assert eight["noise_std_sum"] == pytest.approx(four["noise_std_sum"] * math.sqrt(2))
    assert eight["noise_std"] == four["noise_std"]
    assert eight["noise_std_mean"] == pytest.approx(eight["noise_std_sum"] / 8)


def test_the_truncation_redraws_exactly_what_lies_beyond_the_offset() -> None:
    wide = _encoding()
    t, sensitivity = wide.noise.min_survivors, wide.noise.l2_sensitivity
    unit = dataclasses.replace(wide.noise, noise_multiplier=2 * math.sqrt(t) / sensitivity)
    assert unit.client_variance == pytest.approx(4.0)  # std 2 per client
    narrow = dataclasses.replace(wide, noise=unit, offset=1)  # inside the noise's spread
    noise = narrow.sample_noise(np.random.default_rng(3))
    assert noise.shape == (DIM,) and noise.dtype == np.int64
    assert set(np.unique(noise).tolist()) == {-1, 0, 1}  # ±T itself is kept


def test_the_step_carries_the_rounds_setting() -> None:
    encoding = _encoding()
    step = encoding.step()
    assert step.kind is CONFIG.kind and step.dim == DIM
    assert step.noise_multiplier == CONFIG.noise_multiplier
    assert step.l2_sensitivity == encoding.noise.l2_sensitivity
    assert encoding.scale == encoding.quantizer.levels / 2.0


@pytest.mark.parametrize("size", [DIM - 2, DIM])
def test_an_update_of_the_wrong_length_is_refused_before_drawing(size: int) -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    with pytest.raises(ValueError):
        _encoding().encode(np.zeros(size), rng)
    assert rng.bit_generator.state == state


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_values_are_refused_before_drawing(bad: float) -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    update = np.zeros(DIM - 1)
    update[3] = bad
    with pytest.raises(ValueError):
        _encoding().encode(update, rng)
    assert rng.bit_generator.state == state


def test_decoding_needs_a_survivor() -> None:
    encoding = _encoding()
    with pytest.raises(ValueError):
        encoding.decode_mean(np.zeros(DIM, np.uint64), 0)
    one = encoding.encode(np.zeros(DIM - 1), np.random.default_rng(1)).astype(np.uint64)
    assert encoding.decode_mean(one, 1).shape == (DIM - 1,)
