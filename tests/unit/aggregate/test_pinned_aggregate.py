"""Aggregator behaviours the mutation run found unpinned (benchmarks/mutation.py): each refusal
is asserted by its type and by its effect (the aggregate is as if the refused input never came).
"""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.dp_noise import GaussianNoise
from fedcore.aggregate.mean import WeightedMean
from fedcore.aggregate.robust import CoordinateMedian, MultiKrum, TrimmedMean


@pytest.mark.parametrize("make", [CoordinateMedian, lambda: TrimmedMean(trim_fraction=0.2)])
def test_a_robust_rule_of_one_update_is_that_update(make) -> None:  # type: ignore[no-untyped-def]
    agg = make()
    agg.add({"w": np.array([1.5, -2.0], np.float32)}, 1.0)

    result = agg.result()

    np.testing.assert_array_equal(result.update["w"], [1.5, -2.0])
    assert result.update["w"].dtype == np.float32


def test_the_median_keeps_the_first_updates_dtype() -> None:
    agg = CoordinateMedian()
    agg.add({"w": np.array([1.0], np.float32)}, 1.0)
    agg.add({"w": np.array([2.0], np.float64)}, 1.0)
    agg.add({"w": np.array([4.0], np.float64)}, 1.0)

    assert agg.result().update["w"].dtype == np.float32


def test_krum_refuses_to_select_more_updates_than_it_has() -> None:
    agg = MultiKrum(byzantine=1, select=8)
    for value in range(7):
        agg.add({"w": np.array([float(value)])}, 1.0)

    with pytest.raises(ValueError, match="cannot select 8 of 7"):
        agg.result()


def test_a_robust_rule_refuses_an_update_with_other_names_and_keeps_the_rest() -> None:
    agg = CoordinateMedian()
    agg.add({"w": np.array([1.0]), "b": np.array([0.0])}, 1.0)

    with pytest.raises(ValueError, match="names differ"):
        agg.add({"w": np.array([100.0]), "c": np.array([100.0])}, 1.0)
    with pytest.raises(ValueError, match="names differ"):
        agg.add({"b": np.array([100.0]), "w": np.array([100.0])}, 1.0)  # same names, other order
    agg.add({"w": np.array([3.0]), "b": np.array([2.0])}, 1.0)

    result = agg.result()
    assert result.count == 2
    np.testing.assert_array_equal(result.update["w"], [2.0])
    np.testing.assert_array_equal(result.update["b"], [1.0])


@pytest.mark.parametrize("expected_clients", [0, -3])
def test_gaussian_noise_refuses_fewer_than_one_expected_client(expected_clients: int) -> None:
    with pytest.raises(ValueError, match="expected_clients"):
        GaussianNoise(WeightedMean(), noise_multiplier=1.0, clip_norm=1.0,
                      rng=np.random.default_rng(0), expected_clients=expected_clients)


def test_gaussian_noise_with_one_expected_client_divides_by_one() -> None:
    noised = GaussianNoise(WeightedMean(), noise_multiplier=0.0, clip_norm=1.0,
                           rng=np.random.default_rng(0), expected_clients=1)
    noised.add({"w": np.array([2.0])}, 1.0)
    noised.add({"w": np.array([4.0])}, 1.0)

    result = noised.result()

    assert result.measurements["denominator"] == 1.0
    np.testing.assert_allclose(result.update["w"], [6.0])  # the sum over a denominator of 1


@pytest.mark.parametrize("size", [3, 5])
def test_an_exact_sum_refuses_a_term_of_another_size_and_keeps_its_value(size: int) -> None:
    from fedcore.aggregate.exact import ExactSum

    total = ExactSum((4,))
    total.add(np.array([1.0, 2.0, 3.0, 4.0]))

    with pytest.raises(ValueError):
        total.add(np.full(size, 100.0))
    total.add(np.array([1.0, 1.0, 1.0, 1.0]))

    np.testing.assert_array_equal(total.divide_into_mean(2.0), [1.0, 1.5, 2.0, 2.5])


@pytest.mark.parametrize("bound", [0.0, -1.0, float("inf"), float("nan")])
def test_a_norm_bound_must_be_positive_and_finite(bound: float) -> None:
    from fedcore.aggregate.robust import NormBound

    with pytest.raises(ValueError):
        NormBound(bound)


def test_a_tiny_norm_bound_is_accepted_and_clips_to_it() -> None:
    from fedcore.aggregate.robust import NormBound

    agg = NormBound(1e-3)
    agg.add({"w": np.array([3.0, 4.0])}, 1.0)

    np.testing.assert_allclose(agg.result().update["w"], [6e-4, 8e-4], rtol=1e-5)  # just under C
