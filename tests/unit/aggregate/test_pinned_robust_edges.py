"""Robust aggregators at their edges: the trim count floor(β n) and its bounds, Krum's minimum
of 2f + 3 updates, its scores over the n - f - 2 nearest and its selection, the median of odd
and even counts, the checks every buffered rule runs on an update (each refusal leaves the
aggregate as it was), and norm bounding's statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.aggregate.robust import CoordinateMedian, MultiKrum, NormBound, TrimmedMean


def _u(*values: float) -> dict[str, np.ndarray]:
    return {"w": np.array(values, np.float64)}


# ------------------------------------------------------------------ trimmed mean
@pytest.mark.parametrize(("refused", "accepted"), [(-1e-9, 0.0), (0.5, 0.4999)])
def test_the_trim_fraction_is_in_0_to_a_half(refused: float, accepted: float) -> None:
    with pytest.raises(ValueError):
        TrimmedMean(trim_fraction=refused)
    assert TrimmedMean(trim_fraction=accepted).trim_fraction == accepted


@pytest.mark.parametrize(("beta", "values", "expected", "k"), [
    (0.2, [0.0, 1.0, 2.0, 3.0, 100.0], 2.0, 1),  # floor(1.0) = 1 per side
    (0.2, [0.0, 1.0, 2.0, 101.0], 26.0, 0),  # floor(0.8) = 0: nothing trimmed
    (0.4, [-50.0, 1.0, 2.0, 3.0, 50.0], 2.0, 2),
    (0.0, [1.0, 2.0, 6.0], 3.0, 0),
])
def test_the_trimmed_mean_drops_floor_beta_n_per_side(beta: float, values: list[float],
                                                      expected: float, k: int) -> None:
    agg = TrimmedMean(trim_fraction=beta)
    for v in values:
        agg.add(_u(v), 1.0)
    result = agg.result()
    np.testing.assert_allclose(result.update["w"], [expected])
    assert result.measurements["trimmed_per_side"] == k
    assert result.count == len(values) and result.total_weight == len(values)


# ------------------------------------------------------------------ Krum
@pytest.mark.parametrize(("byzantine", "select"), [(-1, 0), (0, -1)])
def test_krum_refuses_negative_settings(byzantine: int, select: int) -> None:
    with pytest.raises(ValueError):
        MultiKrum(byzantine=byzantine, select=select)
    assert MultiKrum(byzantine=0, select=0).select == 0


def test_krum_needs_2f_plus_3_updates() -> None:
    short = MultiKrum(byzantine=1)
    for v in (0.0, 0.1, 0.2, 0.3):
        short.add(_u(v), 1.0)
    with pytest.raises(ValueError):
        short.result()
    enough = MultiKrum(byzantine=1)
    for v in (0.0, 0.1, 0.2, 0.3, 0.4):
        enough.add(_u(v), 1.0)
    assert enough.result().measurements["krum_selected"] == 4.0  # n - f


def test_krum_selects_at_most_n() -> None:
    too_many = MultiKrum(byzantine=0, select=4)
    for v in (0.0, 1.0, 2.0):
        too_many.add(_u(v), 1.0)
    with pytest.raises(ValueError):
        too_many.result()
    all_of_them = MultiKrum(byzantine=0, select=3)
    for v in (0.0, 1.0, 2.0):
        all_of_them.add(_u(v), 1.0)
    np.testing.assert_allclose(all_of_them.result().update["w"], [1.0])


def test_krum_leaves_out_the_far_update_and_picks_the_most_central() -> None:
    values = [0.0, 1.0, 2.0, 3.0, 1000.0]
    multi = MultiKrum(byzantine=1)  # m = n - f = 4
    one = MultiKrum(byzantine=1, select=1)
    for v in values:
        multi.add(_u(v, -v), 1.0)
        one.add(_u(v, -v), 1.0)
    np.testing.assert_allclose(multi.result().update["w"], [1.5, -1.5])
    # scores over the n - f - 2 = 2 nearest: 1 and 2 tie (2 each), the first wins
    np.testing.assert_allclose(one.result().update["w"], [1.0, -1.0])


def test_krum_scores_sum_the_n_minus_f_minus_2_nearest_only() -> None:
    # f = 0, n = 4: each score sums the 2 nearest squared distances. Points 0, 1, 3, 10:
    # scores 0: 1+9=10, 1: 1+4=5, 3: 4+9=13, 10: 49+81=130 -> the best is 1
    agg = MultiKrum(byzantine=0, select=1)
    for v in (0.0, 1.0, 3.0, 10.0):
        agg.add(_u(v), 1.0)
    np.testing.assert_allclose(agg.result().update["w"], [1.0])


# ------------------------------------------------------------------ median
def test_the_median_of_odd_and_even_counts_keeps_the_dtype() -> None:
    odd = CoordinateMedian()
    for v in (5.0, -1.0, 2.0):
        odd.add({"w": np.array([v], np.float32)}, 1.0)
    result = odd.result()
    assert result.update["w"].dtype == np.float32
    np.testing.assert_array_equal(result.update["w"], [2.0])
    even = CoordinateMedian()
    for v in (5.0, -1.0, 2.0, 3.0):
        even.add(_u(v), 1.0)
    np.testing.assert_allclose(even.result().update["w"], [2.5])


# ------------------------------------------------------------------ the checks of every rule
@pytest.mark.parametrize("weight", [0.0, -1.0, math.inf, math.nan])
def test_a_weight_that_is_not_positive_and_finite_is_refused(weight: float) -> None:
    agg = CoordinateMedian()
    agg.add(_u(1.0), 1.0)
    with pytest.raises(ValueError):
        agg.add(_u(100.0), weight)
    agg.add(_u(3.0), 1e-300)
    result = agg.result()
    assert result.count == 2
    np.testing.assert_allclose(result.update["w"], [2.0])


@pytest.mark.parametrize("bad", [
    {"v": np.zeros(1)},  # another name
    {"w": np.zeros(2)},  # another shape
    {"w": np.zeros(1, np.int64)},  # another dtype kind
    {"w": np.array([np.nan])},
    {"w": np.array([np.inf])},
])
def test_an_update_unlike_the_first_is_refused_and_changes_nothing(bad: dict[str, np.ndarray]
                                                                   ) -> None:
    agg = CoordinateMedian()
    agg.add(_u(1.0), 1.0)
    with pytest.raises(ValueError):
        agg.add(bad, 1.0)
    agg.add(_u(3.0), 1.0)
    result = agg.result()
    assert result.count == 2 and list(result.update) == ["w"]
    np.testing.assert_allclose(result.update["w"], [2.0])


def test_a_non_finite_first_update_is_refused_and_the_next_is_the_first() -> None:
    agg = TrimmedMean(trim_fraction=0.0)
    with pytest.raises(ValueError):
        agg.add({"w": np.array([np.nan, 1.0])}, 1.0)
    agg.add({"v": np.array([4.0])}, 1.0)  # another layout: it is the first now
    assert agg.result().update["v"] == 4.0


def test_the_result_is_taken_once_and_adding_after_it_is_refused() -> None:
    agg = CoordinateMedian()
    with pytest.raises(ValueError):
        agg.result()  # nothing added
    agg.add(_u(1.0), 1.0)
    first = agg.result()
    assert agg.result() is first
    with pytest.raises(ValueError):
        agg.add(_u(2.0), 1.0)
    assert agg.result() is first and first.count == 1


def test_integer_tensors_take_the_weighted_mean_in_the_updates_order() -> None:
    agg = CoordinateMedian()
    agg.add({"steps": np.array([10], np.int64), "w": np.array([1.0])}, 1.0)
    agg.add({"steps": np.array([40], np.int64), "w": np.array([5.0])}, 3.0)
    agg.add({"steps": np.array([40], np.int64), "w": np.array([2.0])}, 0.0 + 1e-12)
    result = agg.result()
    assert list(result.update) == ["steps", "w"]
    np.testing.assert_allclose(result.update["w"], [2.0])
    assert result.update["steps"].item() == pytest.approx(32.5, rel=1e-6)
    only_ints = TrimmedMean(trim_fraction=0.1)
    only_ints.add({"n": np.array([2], np.int64)}, 1.0)
    only_ints.add({"n": np.array([4], np.int64)}, 1.0)
    assert only_ints.result().update["n"].item() == 3


# ------------------------------------------------------------------ norm bound
@pytest.mark.parametrize("bound", [0.0, -1.0, math.inf, math.nan])
def test_the_norm_bound_is_positive_and_finite(bound: float) -> None:
    with pytest.raises(ValueError):
        NormBound(bound)
    assert NormBound(1e-9).bound == 1e-9


def test_norm_bounding_clips_counts_strictly_above_and_averages_norms() -> None:
    agg = NormBound(5.0)
    agg.add({"w": np.array([3.0, 4.0])}, 1.0)  # norm 5: not clipped
    agg.add({"w": np.array([0.0, 10.0])}, 1.0)  # norm 10: clipped to 5
    agg.add({"w": np.array([0.0, 1.0])}, 2.0)
    result = agg.result()
    np.testing.assert_allclose(result.update["w"], [(3.0 + 0.0 + 0.0) / 4,
                                                    (4.0 + 5.0 + 2.0) / 4], rtol=1e-5)
    assert result.measurements["clipped_fraction"] == pytest.approx(1 / 3)
    assert result.measurements["mean_update_norm"] == pytest.approx(16 / 3)
    assert result.measurements["norm_bound"] == 5.0


def test_norm_bounding_leaves_a_read_only_update_untouched() -> None:
    frozen = np.array([0.0, 10.0])
    frozen.setflags(write=False)
    agg = NormBound(1.0)
    agg.add({"w": frozen, "n": np.array([3], np.int64)}, 1.0)
    np.testing.assert_array_equal(frozen, [0.0, 10.0])
    result = agg.result()
    np.testing.assert_allclose(result.update["w"], [0.0, 1.0], rtol=1e-5)
    assert result.update["n"].item() == 3
