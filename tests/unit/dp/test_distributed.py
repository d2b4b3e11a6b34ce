"""Distributed integer noise: variances, worst-case survivors, samplers, ε bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.dp.distributed import (
    DistributedNoise,
    gaussian_approx_epsilon,
    integer_l2_sensitivity,
    sample_discrete_gaussian,
    sample_skellam,
    skellam_epsilon,
)
from fedcore.protocol.distributed_dp import IntegerNoise

DELTA = 1e-5


def _noise(kind: IntegerNoise = IntegerNoise.SKELLAM, t: int = 6) -> DistributedNoise:
    return DistributedNoise(noise_multiplier=1.0, l2_sensitivity=20.0, min_survivors=t, kind=kind)


def test_sizing_splits_the_total_variance_over_t():
    noise = _noise(t=8)

    assert noise.total_variance == pytest.approx(400.0)
    assert noise.client_variance == pytest.approx(50.0)


@pytest.mark.parametrize("survivors", range(6, 21))
def test_sum_variance_is_never_below_the_minimum_with_t_or_more_survivors(survivors: int):
    noise = _noise(t=6)

    assert noise.sum_variance(survivors) >= noise.total_variance


@pytest.mark.parametrize("kind", list(IntegerNoise))
def test_noise_in_the_sum_over_t_survivors_has_the_intended_variance(kind: IntegerNoise):
    # arrange: t clients each add their share to 100k coordinates
    noise = _noise(kind, t=6)
    rng = np.random.default_rng(0)

    total = sum(noise.sample(100_000, rng) for _ in range(6))

    assert total.dtype == np.int64
    assert abs(total.mean()) < 0.02 * math.sqrt(noise.total_variance)
    assert total.var() == pytest.approx(noise.total_variance, rel=0.02)


def test_noise_survives_masking_modulo_2_to_the_b():
    # Pairwise masks cancel mod 2^32; what the server unmasks is sum(x) + sum(noise).
    rng = np.random.default_rng(1)
    noise, t, dim, mod = _noise(t=4), 4, 50_000, 2**32
    updates = [rng.integers(-100, 100, dim) for _ in range(t)]
    shares = [noise.sample(dim, rng) for _ in range(t)]
    masks = [rng.integers(0, mod, dim, dtype=np.uint64) for _ in range(t - 1)]
    masks.append((-np.sum(masks, axis=0, dtype=np.uint64)) % mod)

    masked = [((u + s) % mod).astype(np.uint64) + m for u, s, m in zip(updates, shares, masks)]
    unmasked = np.sum(masked, axis=0, dtype=np.uint64) % mod
    centred = np.where(unmasked >= mod // 2, unmasked.astype(np.int64) - mod, unmasked)

    recovered_noise = centred - np.sum(updates, axis=0)
    np.testing.assert_array_equal(recovered_noise, np.sum(shares, axis=0))
    assert recovered_noise.var() == pytest.approx(noise.total_variance, rel=0.03)


def test_skellam_has_the_exact_variance():
    samples = sample_skellam(12.5, 400_000, np.random.default_rng(2))

    assert samples.var() == pytest.approx(12.5, rel=0.01)


def test_discrete_gaussian_matches_its_pmf():
    sigma = 1.7
    samples = sample_discrete_gaussian(sigma, 200_000, np.random.default_rng(3))

    support = np.arange(-8, 9)
    pmf = np.exp(-(support**2) / (2 * sigma**2))
    pmf /= pmf.sum()
    observed = np.array([(samples == k).mean() for k in support])
    np.testing.assert_allclose(observed, pmf, atol=0.004)


def test_samplers_are_reproducible_and_shaped():
    for kind in IntegerNoise:
        first = _noise(kind).sample((3, 4), np.random.default_rng(5))
        second = _noise(kind).sample((3, 4), np.random.default_rng(5))
        assert first.shape == (3, 4)
        np.testing.assert_array_equal(first, second)


def test_a_million_coordinates_can_be_sampled():
    # No timing assertion: the benchmark-style check lives in the module docstring's claim.
    for kind in IntegerNoise:
        assert _noise(kind).sample(1_000_000, np.random.default_rng(6)).shape == (1_000_000,)


def test_integer_sensitivity_adds_the_rounding_slack():
    assert integer_l2_sensitivity(clip_norm=1.0, scale=100.0, dim=400) == pytest.approx(110.0)


def test_skellam_bound_is_close_to_the_gaussian_one_for_large_noise():
    noise = DistributedNoise(noise_multiplier=2.0, l2_sensitivity=1000.0, min_survivors=10)

    skellam = skellam_epsilon(noise, dim=10_000, rounds=50, delta=DELTA)
    gaussian = gaussian_approx_epsilon(noise, sample_rate=1.0, rounds=50, delta=DELTA)

    assert gaussian <= skellam <= gaussian * 1.05


def test_skellam_bound_falls_with_more_noise_and_rises_with_rounds():
    def eps(z: float, rounds: int) -> float:
        noise = DistributedNoise(noise_multiplier=z, l2_sensitivity=100.0, min_survivors=5)
        return skellam_epsilon(noise, dim=1000, rounds=rounds, delta=DELTA)

    assert eps(2.0, 10) < eps(1.0, 10) < eps(1.0, 20)


def test_client_sampling_lowers_the_gaussian_approximation():
    noise = _noise()

    sampled = gaussian_approx_epsilon(noise, sample_rate=0.01, rounds=100, delta=DELTA)
    full = gaussian_approx_epsilon(noise, sample_rate=1.0, rounds=100, delta=DELTA)

    assert sampled < full


@pytest.mark.parametrize("kwargs", [dict(noise_multiplier=0.0, l2_sensitivity=1.0, min_survivors=2),
                                    dict(noise_multiplier=1.0, l2_sensitivity=1.0, min_survivors=0)])
def test_bad_sizing_is_rejected(kwargs):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        DistributedNoise(**kwargs)
