"""Gaussian noise on the sum, its denominators, and adaptive clipping."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.base import AggregateResult
from fedcore.aggregate.clip import ClipStats
from fedcore.aggregate.dp_noise import (
    AdaptiveClipping,
    AdaptiveClipState,
    GaussianNoise,
    dp_mean,
    next_clip_state,
)
from fedcore.aggregate.mean import WeightedMean
from fedcore.protocol.params import Array, global_norm


class FixedMean:
    """Inner double: a 'mean' of 2.0 everywhere over `count` unit-weight clients."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size, self.weights = count, size, []  # type: ignore[var-annotated]

    def add(self, update: dict[str, Array], weight: float) -> None:
        self.weights.append(weight)

    def result(self) -> AggregateResult:
        return AggregateResult(update={"x": np.full(self.size, 2.0)}, count=self.count,
                               total_weight=float(self.count), measurements={"inner": 1.0})


def test_noise_on_the_sum_has_std_z_c_over_the_fixed_denominator():
    # arrange: 200k coordinates make the empirical std precise to ~0.3%
    noise = GaussianNoise(FixedMean(count=8, size=200_000), noise_multiplier=1.5, clip_norm=0.4,
                          rng=np.random.default_rng(0), expected_clients=10)

    result = noise.result()

    # (sum + N(0, (zC)^2)) / m with sum = 8 * 2.0
    values = result.update["x"] - 8 * 2.0 / 10
    assert abs(values.mean()) < 0.01 * 1.5 * 0.4 / 10
    assert values.std() == pytest.approx(1.5 * 0.4 / 10, rel=0.01)
    assert result.measurements["noise_std_mean"] == pytest.approx(0.06)
    assert result.measurements["inner"] == 1.0


def test_without_expected_clients_the_actual_count_divides():
    noise = GaussianNoise(FixedMean(count=8, size=200_000), noise_multiplier=1.0, clip_norm=1.0,
                          rng=np.random.default_rng(1))

    values = noise.result().update["x"]

    assert values.mean() == pytest.approx(2.0, abs=0.01)
    assert values.std() == pytest.approx(1 / 8, rel=0.01)


def test_noise_std_holds_over_many_seeded_draws():
    # Many rounds with few coordinates: the per-round noise on one coordinate is N(0, (zC/m)^2)
    draws = []
    for seed in range(2000):
        agg = dp_mean(clip_norm=1.0, noise_multiplier=0.8, rng=np.random.default_rng(seed),
                      expected_clients=5)
        for _ in range(5):
            agg.add({"x": np.zeros(3)}, 1.0)
        draws.append(agg.result().update["x"])
    samples = np.concatenate(draws)

    assert samples.std() == pytest.approx(0.8 / 5, rel=0.03)  # 6000 samples: se ~ 0.9%


def test_weights_are_ignored_for_the_dp_sum():
    inner = FixedMean(count=2, size=1)
    noise = GaussianNoise(inner, noise_multiplier=1.0, clip_norm=1.0,
                          rng=np.random.default_rng(0))

    noise.add({"x": np.zeros(1)}, 250.0)

    assert inner.weights == [1.0]


def test_dp_mean_without_noise_is_the_unweighted_mean_of_clipped_updates():
    agg = dp_mean(clip_norm=1.0, noise_multiplier=0.0, rng=np.random.default_rng(0),
                  expected_clients=None)
    agg.add({"x": np.array([10.0, 0.0])}, 5.0)   # clipped to [1, 0]
    agg.add({"x": np.array([0.0, 0.5])}, 100.0)  # within the bound

    result = agg.result()

    np.testing.assert_allclose(result.update["x"], [0.5, 0.25], rtol=1e-6)
    assert result.measurements["clipped_fraction"] == 0.5


def test_dp_mean_update_stays_within_noise_of_the_clip_bound():
    rng = np.random.default_rng(3)
    agg = dp_mean(clip_norm=0.1, noise_multiplier=1.0, rng=np.random.default_rng(4),
                  expected_clients=20)
    for _ in range(20):
        agg.add({"x": rng.normal(size=1000) * 50}, 1.0)

    result = agg.result()

    # signal norm <= C; noise norm ~ sqrt(d) * zC/m
    assert global_norm(result.update) <= 0.1 + 4 * np.sqrt(1000) * 0.1 / 20


def _round(state: AdaptiveClipState, norms: np.ndarray, config: AdaptiveClipping,
           rng: np.random.Generator) -> AdaptiveClipState:
    unclipped = int((norms <= state.clip_norm).sum())
    stats = ClipStats(count=len(norms), unclipped_count=unclipped, norm_sum=float(norms.sum()))
    new_state, _ = next_clip_state(state, stats, config=config, expected_clients=len(norms),
                                   rng=rng)
    return new_state


@pytest.mark.parametrize("start", [0.05, 50.0])
def test_adaptive_clipping_moves_c_toward_the_target_quantile(start: float):
    rng = np.random.default_rng(0)
    config = AdaptiveClipping(target_quantile=0.5, learning_rate=0.2, count_noise_std=100 / 20)
    state = AdaptiveClipState(clip_norm=start)

    for _ in range(300):
        state = _round(state, rng.uniform(0.0, 10.0, size=100), config, rng)

    assert state.clip_norm == pytest.approx(5.0, rel=0.2)  # the median of U(0, 10)


def test_one_adaptive_step_is_the_geometric_update():
    config = AdaptiveClipping(target_quantile=0.8, learning_rate=0.5, count_noise_std=0.0)
    stats = ClipStats(count=10, unclipped_count=3, norm_sum=0.0)

    state, measurements = next_clip_state(AdaptiveClipState(clip_norm=2.0), stats, config=config,
                                          expected_clients=10, rng=np.random.default_rng(0))

    assert measurements["noisy_unclipped_fraction"] == pytest.approx(0.3)
    assert state.clip_norm == pytest.approx(2.0 * np.exp(-0.5 * (0.3 - 0.8)))


def test_count_noise_has_std_sigma_b_over_m():
    config = AdaptiveClipping(target_quantile=0.5, learning_rate=1.0, count_noise_std=4.0)
    stats = ClipStats(count=50, unclipped_count=25, norm_sum=0.0)
    rng = np.random.default_rng(7)

    fractions = [next_clip_state(AdaptiveClipState(clip_norm=1.0), stats, config=config,
                                 expected_clients=50, rng=rng)[1]["noisy_unclipped_fraction"]
                 for _ in range(4000)]

    assert np.std(fractions) == pytest.approx(4.0 / 50, rel=0.05)
    assert np.mean(fractions) == pytest.approx(0.5, abs=0.005)


def test_adaptive_with_secure_sum_counts_matches_server_side_counts():
    # Under secagg only summed counts arrive; the state update needs nothing else.
    stats = ClipStats(count=4, unclipped_count=1, norm_sum=float("nan"))
    config = AdaptiveClipping(count_noise_std=0.0)

    state, _ = next_clip_state(AdaptiveClipState(clip_norm=1.0), stats, config=config,
                               expected_clients=4, rng=np.random.default_rng(0))

    assert state.clip_norm > 1.0  # 25% unclipped < 50% target: C grows


@pytest.mark.parametrize("kwargs", [dict(target_quantile=1.5, count_noise_std=1.0),
                                    dict(learning_rate=0.0, count_noise_std=1.0),
                                    dict(count_noise_std=-1.0)])
def test_bad_adaptive_configuration_is_rejected(kwargs):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        AdaptiveClipping(**kwargs)


def test_weighted_mean_inner_gives_the_sum_back():
    noise = GaussianNoise(WeightedMean(), noise_multiplier=0.0, clip_norm=1.0,
                          rng=np.random.default_rng(0), expected_clients=4)
    for value in (1.0, 2.0, 3.0):
        noise.add({"x": np.array([value], dtype=np.float32)}, 9.0)

    assert noise.result().update["x"][0] == pytest.approx(6.0 / 4)
