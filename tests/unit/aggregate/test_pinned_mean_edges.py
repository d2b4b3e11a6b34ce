"""The weighted mean's result: no measurement when every step was exact, counts and total
weight as added (integer and fractional weights together), and refusals that change nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.aggregate.mean import WeightedMean


def test_an_exact_mean_reports_no_inexact_steps() -> None:
    agg = WeightedMean()
    agg.add({"w": np.array([1.0, 2.0])}, 1.0)
    agg.add({"w": np.array([4.0, 8.0])}, 3.0)
    result = agg.result()
    assert result.measurements == {}
    assert result.count == 2 and result.total_weight == 4.0
    np.testing.assert_array_equal(result.update["w"], [13.0 / 4, 26.0 / 4])


def test_integer_and_fractional_weights_add_up() -> None:
    agg = WeightedMean()
    agg.add({"w": np.array([2.0])}, 2.0)
    agg.add({"w": np.array([4.0])}, 0.5)
    result = agg.result()
    assert result.total_weight == 2.5 and result.count == 2
    np.testing.assert_allclose(result.update["w"], [(4.0 + 2.0) / 2.5])


@pytest.mark.parametrize("weight", [0.0, -0.0, -1.0, math.inf, math.nan])
def test_a_bad_weight_is_refused_and_changes_nothing(weight: float) -> None:
    agg = WeightedMean()
    agg.add({"w": np.array([1.0])}, 1.0)
    with pytest.raises(ValueError):
        agg.add({"w": np.array([100.0])}, weight)
    result = agg.result()
    assert result.count == 1 and result.total_weight == 1.0
    np.testing.assert_array_equal(result.update["w"], [1.0])


def test_an_overflowing_term_is_refused_before_anything_is_folded() -> None:
    agg = WeightedMean()
    agg.add({"a": np.array([1.0]), "b": np.array([1.0])}, 1.0)
    with pytest.raises(ValueError):
        agg.add({"a": np.array([5.0]), "b": np.array([1e308])}, 10.0)
    result = agg.result()
    np.testing.assert_array_equal(result.update["a"], [1.0])
    assert result.count == 1
