"""Aggregator settings at their boundaries and the refusals coverage of the aggregate tests found
unexercised: the smallest legal value of each setting is accepted, the next one down refused
with a ValueError; an aggregate once taken refuses more updates (the result stays as it was);
adaptive clipping's update rule computed by hand at zero count noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.aggregate.clip import ClipStats
from fedcore.aggregate.dp_noise import (
    AdaptiveClipping,
    AdaptiveClipState,
    GaussianNoise,
    next_clip_state,
)
from fedcore.aggregate.mean import WeightedMean
from fedcore.aggregate.robust import CoordinateMedian, MultiKrum


def _noise(**settings: float) -> GaussianNoise:
    return GaussianNoise(WeightedMean(), rng=np.random.default_rng(0),
                         **{"noise_multiplier": 1.0, "clip_norm": 1.0, **settings})  # type: ignore[arg-type]


@pytest.mark.parametrize("settings", [{"noise_multiplier": -1e-9}, {"noise_multiplier": math.nan},
                                      {"noise_multiplier": math.inf}, {"clip_norm": 0.0},
                                      {"clip_norm": -1.0}, {"clip_norm": math.inf}])
def test_gaussian_noise_refuses_a_negative_noise_or_a_non_positive_clip(
        settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        _noise(**settings)


def test_gaussian_noise_of_zero_is_the_plain_sum_over_the_clients() -> None:
    noised = _noise(noise_multiplier=0.0, clip_norm=1e-300)
    noised.add({"w": np.array([0.0])}, 1.0)

    assert noised.result().update["w"][0] == 0.0


@pytest.mark.parametrize("settings", [{"target_quantile": -0.01}, {"target_quantile": 1.01},
                                      {"learning_rate": 0.0}, {"count_noise_std": -0.1},
                                      {"count_noise_std": math.nan}])
def test_adaptive_clipping_refuses_settings_out_of_range(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveClipping(**{"count_noise_std": 1.0, **settings})  # type: ignore[arg-type]


@pytest.mark.parametrize("quantile", [0.0, 1.0])
def test_adaptive_clipping_accepts_the_extreme_quantiles(quantile: float) -> None:
    assert AdaptiveClipping(count_noise_std=0.0, target_quantile=quantile).target_quantile == quantile


def test_the_clip_moves_by_exp_of_minus_eta_times_the_quantile_error() -> None:
    config = AdaptiveClipping(count_noise_std=0.0, target_quantile=0.5, learning_rate=0.2)
    stats = ClipStats(count=4, unclipped_count=3, norm_sum=2.0)  # 3 of 4 within the bound

    state, measured = next_clip_state(AdaptiveClipState(clip_norm=2.0), stats, config=config,
                                      expected_clients=4, rng=np.random.default_rng(0))

    assert measured["noisy_unclipped_fraction"] == pytest.approx(0.75)
    assert state.clip_norm == pytest.approx(2.0 * math.exp(-0.2 * (0.75 - 0.5)))
    with pytest.raises(ValueError):
        next_clip_state(AdaptiveClipState(clip_norm=2.0), stats, config=config,
                        expected_clients=0, rng=np.random.default_rng(0))
    one, _ = next_clip_state(AdaptiveClipState(clip_norm=2.0), ClipStats(
        count=1, unclipped_count=1, norm_sum=0.5), config=config, expected_clients=1,
        rng=np.random.default_rng(0))
    assert one.clip_norm == pytest.approx(2.0 * math.exp(-0.2 * 0.5))


@pytest.mark.parametrize("make", [WeightedMean, CoordinateMedian])
def test_an_aggregate_once_taken_refuses_more_updates(make) -> None:  # type: ignore[no-untyped-def]
    agg = make()
    agg.add({"w": np.array([1.0])}, 1.0)
    first = agg.result().update["w"].copy()

    with pytest.raises(ValueError):
        agg.add({"w": np.array([100.0])}, 1.0)
    np.testing.assert_array_equal(first, [1.0])


def test_the_mean_taken_twice_is_the_same() -> None:
    agg = WeightedMean()
    agg.add({"w": np.array([1.0])}, 1.0)
    first = agg.result().update["w"].copy()
    with pytest.raises(ValueError):
        agg.add({"w": np.array([100.0])}, 1.0)

    np.testing.assert_array_equal(agg.result().update["w"], first)


def test_a_robust_aggregate_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        CoordinateMedian().result()


def test_krum_needs_non_negative_settings_and_zero_byzantine_is_the_mean() -> None:
    for settings in ({"byzantine": -1}, {"byzantine": 0, "select": -1}):
        with pytest.raises(ValueError):
            MultiKrum(**settings)
    agg = MultiKrum(byzantine=0)
    for value in (1.0, 2.0, 6.0):
        agg.add({"w": np.array([value])}, 1.0)

    np.testing.assert_allclose(agg.result().update["w"], [3.0])


@pytest.mark.parametrize(("size", "limit"), [(5000, 4096), (64 * 5000, 5000)])
def test_at_most_max_4096_or_size_over_64_elements_spill_then_steps_round(size: int,
                                                                           limit: int) -> None:
    """Each element of 1 + 2**-100 + 2**-200 spans 200 bits: more than a float64 pair holds,
    so it spills to an exact integer while the spill has room, and rounds after."""
    from fedcore.aggregate.exact import ExactSum

    for spanning, spilled, rounded in ((limit, limit, 0), (limit + 1, 0, limit + 1)):
        total = ExactSum((size,))
        total.add(np.ones(size))
        total.add(np.full(size, 2.0**-100))
        tiny = np.zeros(size)
        tiny[:spanning] = 2.0**-200
        total.add(tiny)

        assert (total.spilled, total.inexact_steps) == (spilled, rounded)


def test_a_mean_taken_refuses_even_an_empty_update() -> None:
    agg = WeightedMean()
    agg.add({"w": np.array([2.0])}, 1.0)
    first = agg.result()

    with pytest.raises(ValueError):
        agg.add({}, 1.0)
    assert agg.result() is first and first.count == 1


def test_an_update_exactly_at_the_norm_bound_is_not_counted_as_clipped() -> None:
    from fedcore.aggregate.robust import NormBound

    for norm_scale, clipped in ((1.0, 0.0), (1.0 + 1e-12, 1.0)):
        agg = NormBound(5.0)
        agg.add({"w": np.array([3.0, 4.0]) * norm_scale}, 1.0)  # norm 5, the bound

        measured = agg.result().measurements
        assert measured["clipped_fraction"] == clipped
        assert measured["mean_update_norm"] == pytest.approx(5.0)


def test_a_sum_that_spilled_and_then_overflowed_stays_infinite() -> None:
    """An element whose exact part went to the spill (1 + 2**-100 + 2**-200) and whose sum then
    exceeds the float64 range is +inf in the mean, like any overflowed element; the others are
    exact."""
    from fedcore.aggregate.exact import ExactSum

    total = ExactSum((2,))
    total.add(np.array([1.0, 1.0]))
    total.add(np.array([2.0**-100, 0.0]))
    total.add(np.array([2.0**-200, 0.0]))
    assert total.spilled == 1
    big = np.finfo(np.float64).max
    total.add(np.array([big, 0.5]))
    total.add(np.array([big, 0.5]))

    mean = total.divide_into_mean(1.0)

    assert mean[0] == np.inf
    assert mean[1] == 2.0
