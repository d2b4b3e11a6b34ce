"""The integer-noise samplers against their definitions, with fixed seeds.

Skellam(v) is Poisson(v/2) - Poisson(v/2): mean 0, variance v, for every v >= 0 (below 1 too:
a client's share sigma^2/t is small when t is large); a variance that is negative, NaN or
infinite is refused. The discrete Gaussian N_Z(0, sigma^2) has pmf proportional to
exp(-k^2 / (2 sigma^2)) on the integers, for sigma below 1 as well, and its variance is that
pmf's (slightly below sigma^2 for small sigma); its proposal, the discrete Laplace of scale t,
has pmf proportional to exp(-|y| / t). `sample_integer_noise` takes a variance for both kinds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.dp.distributed import (
    _discrete_laplace,
    sample_discrete_gaussian,
    sample_integer_noise,
    sample_skellam,
)
from fedcore.protocol.distributed_dp import IntegerNoise

N = 200_000


def _dg_pmf(sigma: float, support: np.ndarray) -> np.ndarray:
    wide = np.arange(-60, 61)
    weights = np.exp(-(wide.astype(np.float64) ** 2) / (2 * sigma**2))
    pmf = weights / weights.sum()
    return pmf[support + 60]


def _dg_variance(sigma: float) -> float:
    support = np.arange(-60, 61)
    return float((support.astype(np.float64) ** 2 * _dg_pmf(sigma, support)).sum())


@pytest.mark.parametrize("variance", [0.3, 0.5, 0.99, 4.0])
def test_skellam_has_mean_zero_and_the_variance_asked_for_also_below_one(variance: float) -> None:
    samples = sample_skellam(variance, N, np.random.default_rng(11))

    assert samples.dtype == np.int64 and samples.shape == (N,)
    assert abs(samples.mean()) < 4 * math.sqrt(variance / N)
    assert samples.var() == pytest.approx(variance, rel=0.02)
    # symmetric: +k and -k are equally likely
    assert (samples == 1).mean() == pytest.approx((samples == -1).mean(), abs=0.005)


def test_skellam_of_variance_zero_is_all_zeros() -> None:
    samples = sample_skellam(0.0, (4, 5), np.random.default_rng(0))

    assert samples.shape == (4, 5) and not samples.any()


@pytest.mark.parametrize("variance", [-1e-9, -1.0, math.nan, math.inf, -math.inf])
def test_skellam_refuses_a_variance_that_is_negative_or_not_finite(variance: float) -> None:
    rng = np.random.default_rng(0)
    before = rng.bit_generator.state

    with pytest.raises(ValueError, match="variance"):
        sample_skellam(variance, 10, rng)
    assert rng.bit_generator.state == before  # refused before drawing anything


@pytest.mark.parametrize("sigma", [0.5, 0.8, 1.0, 2.5])
def test_the_discrete_gaussian_follows_its_pmf_and_variance(sigma: float) -> None:
    samples = sample_discrete_gaussian(sigma, N, np.random.default_rng(12))

    support = np.arange(-6, 7)
    observed = np.array([(samples == k).mean() for k in support])
    np.testing.assert_allclose(observed, _dg_pmf(sigma, support), atol=0.005)
    assert abs(samples.mean()) < 4 * sigma / math.sqrt(N)
    assert samples.var() == pytest.approx(_dg_variance(sigma), rel=0.025)


def test_the_discrete_gaussian_of_a_larger_sigma_has_variance_sigma_squared() -> None:
    samples = sample_discrete_gaussian(7.0, N, np.random.default_rng(13))

    assert samples.var() == pytest.approx(49.0, rel=0.02)
    assert abs(samples.mean()) < 4 * 7.0 / math.sqrt(N)


@pytest.mark.parametrize("sigma", [-1e-9, math.nan, math.inf])
def test_the_discrete_gaussian_refuses_a_bad_sigma(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma"):
        sample_discrete_gaussian(sigma, 3, np.random.default_rng(0))


@pytest.mark.parametrize("t", [1, 3])
def test_the_discrete_laplace_proposal_has_pmf_proportional_to_exp_minus_abs_y_over_t(t: int) -> None:
    y = _discrete_laplace(t, N, np.random.default_rng(14))

    assert y.dtype == np.int64
    # P(y) = (1 - e^(-1/t)) / (1 + e^(-1/t)) * e^(-|y|/t)
    r = math.exp(-1 / t)
    for k in range(-3, 4):
        expected = (1 - r) / (1 + r) * r ** abs(k)
        assert (y == k).mean() == pytest.approx(expected, abs=0.004)


@pytest.mark.parametrize("kind", list(IntegerNoise))
def test_integer_noise_of_either_kind_has_the_variance_asked_for(kind: IntegerNoise) -> None:
    samples = sample_integer_noise(kind, 16.0, N, np.random.default_rng(15))

    assert samples.dtype == np.int64
    assert samples.var() == pytest.approx(16.0, rel=0.02)
