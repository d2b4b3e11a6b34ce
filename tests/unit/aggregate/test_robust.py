"""Robust aggregators against hand-computed values, and their breakdown points."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.robust import CoordinateMedian, MultiKrum, NormBound, TrimmedMean


def combine(agg: object, updates: list[list[float]], weights: list[float] | None = None) -> np.ndarray:
    for i, u in enumerate(updates):
        agg.add({"w": np.array(u, np.float64)}, 1.0 if weights is None else weights[i])  # type: ignore[attr-defined]
    return agg.result().update["w"]  # type: ignore[attr-defined,no-any-return]


UPDATES = [[1.0, 10.0], [2.0, -4.0], [3.0, 0.0], [100.0, 1.0], [-50.0, 2.0]]


def test_median_by_hand() -> None:
    # column 0 sorted: -50, 1, 2, 3, 100 -> 2; column 1: -4, 0, 1, 2, 10 -> 1
    np.testing.assert_array_equal(combine(CoordinateMedian(), UPDATES), [2.0, 1.0])


def test_median_of_an_even_count_is_the_middle_mean() -> None:
    np.testing.assert_array_equal(combine(CoordinateMedian(), UPDATES[:4]), [2.5, 0.5])


def test_median_ignores_weights() -> None:
    assert combine(CoordinateMedian(), UPDATES, [1, 1, 1, 1000, 1])[0] == 2.0


def test_trimmed_mean_by_hand() -> None:
    # beta 0.2 of 5: k = 1 per side. column 0: mean(1, 2, 3) = 2; column 1: mean(0, 1, 2) = 1
    np.testing.assert_allclose(combine(TrimmedMean(trim_fraction=0.2), UPDATES), [2.0, 1.0])
    # beta 0.1 of 5: k = 0, the plain mean: (1+2+3+100-50)/5 = 11.2, (10-4+0+1+2)/5 = 1.8
    np.testing.assert_allclose(combine(TrimmedMean(trim_fraction=0.1), UPDATES), [11.2, 1.8])


def test_multi_krum_by_hand() -> None:
    # Six scalar updates, f = 1: each score sums the squared distances to the n - f - 2 = 3
    # nearest others. 0: 1+4+9 = 14; 1: 1+1+4 = 6; 2: 1+1+4 = 6; 3: 1+4+9 = 14;
    # 10: 49+64+81 = 194; 20: 100+289+324 = 713. m = 2 picks updates 1 and 2: mean 1.5.
    updates = [[0.0], [1.0], [2.0], [3.0], [10.0], [20.0]]
    np.testing.assert_allclose(combine(MultiKrum(byzantine=1, select=2), updates), [1.5])
    # m = 1 is Krum: the first of the best (update 1, stable order)
    np.testing.assert_allclose(combine(MultiKrum(byzantine=1, select=1), updates), [1.0])
    # m = 0: n - f = 5 best: all but 20 -> (0+1+2+3+10)/5
    np.testing.assert_allclose(combine(MultiKrum(byzantine=1), updates), [3.2])


def test_krum_needs_2f_plus_3_updates() -> None:
    agg = MultiKrum(byzantine=2)
    for u in ([0.0], [1.0], [2.0], [3.0], [4.0], [5.0]):
        agg.add({"w": np.array(u)}, 1.0)

    with pytest.raises(ValueError, match="at least 7"):
        agg.result()


def test_norm_bound_clips_each_update_before_the_weighted_mean() -> None:
    # [3, 4] (norm 5) -> [0.6, 0.8] at bound 1; [0.3, 0] stays. weights 1, 3.
    got = combine(NormBound(1.0), [[3.0, 4.0], [0.3, 0.0]], [1.0, 3.0])

    np.testing.assert_allclose(got, [(0.6 + 0.9) / 4, 0.8 / 4], rtol=1e-5)


@pytest.mark.parametrize("make", [CoordinateMedian, lambda: TrimmedMean(trim_fraction=0.2),
                                  lambda: MultiKrum(byzantine=0)])
def test_bad_updates_are_refused_and_change_nothing(make: object) -> None:
    agg = make()  # type: ignore[operator]
    agg.add({"w": np.array([1.0, 2.0])}, 1.0)

    for bad in ({"w": np.array([1.0])}, {"v": np.array([1.0, 2.0])},
                {"w": np.array([np.nan, 1.0])}, {"w": np.array([1, 2])}):
        with pytest.raises(ValueError):
            agg.add(bad, 1.0)
    with pytest.raises(ValueError):
        agg.add({"w": np.array([1.0, 2.0])}, 0.0)
    agg.add({"w": np.array([3.0, 4.0])}, 1.0)
    agg.add({"w": np.array([5.0, 6.0])}, 1.0)

    assert agg.result().count == 3


@pytest.mark.parametrize("make", [CoordinateMedian, lambda: TrimmedMean(trim_fraction=0.2),
                                  lambda: MultiKrum(byzantine=0)])
def test_the_aggregate_asked_again_is_the_same_and_takes_no_more_updates(make: object) -> None:
    """As `WeightedMean`: a second `result()` returns the first (it used to raise, the copies
    being freed), and an update after it is refused."""
    agg = make()  # type: ignore[operator]
    for value in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]):
        agg.add({"w": np.array(value)}, 1.0)
    first = agg.result()

    assert agg.result() is first
    with pytest.raises(ValueError, match="already taken"):
        agg.add({"w": np.array([7.0, 8.0])}, 1.0)
    assert agg.result() is first and first.count == 3


def test_a_trim_of_half_or_more_is_refused() -> None:
    with pytest.raises(ValueError, match="trim_fraction"):
        TrimmedMean(trim_fraction=0.5)


# ------------------------------------------------------------------ breakdown points
N, DIM = 21, 50


def _attack(f: int, seed: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    honest = rng.normal(size=(N - f, DIM))
    poisoned = np.full((f, DIM), 1e6)
    return [*honest, *poisoned], honest.min(axis=0), honest.max(axis=0)


def _within(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> bool:
    return bool(np.all((value >= low) & (value <= high)))


def _aggregate(agg: object, updates: list[np.ndarray]) -> np.ndarray:
    for u in updates:
        agg.add({"w": u.copy()}, 1.0)  # type: ignore[attr-defined]
    return agg.result().update["w"]  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("seed", range(5))
def test_median_breaks_down_at_half(seed: int) -> None:
    # f = 10 < n/2 = 10.5: every coordinate within the honest range; f = 11: not
    updates, low, high = _attack(10, seed)
    assert _within(_aggregate(CoordinateMedian(), updates), low, high)

    updates, low, high = _attack(11, seed)
    broken = _aggregate(CoordinateMedian(), updates)
    assert not _within(broken, low, high)
    assert broken.min() > 1e5


@pytest.mark.parametrize("seed", range(5))
def test_trimmed_mean_withstands_as_many_as_it_trims(seed: int) -> None:
    # beta 0.2 of 21: k = 4 per side. f = 4 stays in the honest range; f = 5 does not
    updates, low, high = _attack(4, seed)
    assert _within(_aggregate(TrimmedMean(trim_fraction=0.2), updates), low, high)

    updates, low, high = _attack(5, seed)
    assert _aggregate(TrimmedMean(trim_fraction=0.2), updates).min() > 1e4


@pytest.mark.parametrize("seed", range(5))
def test_multi_krum_with_f_within_its_bound_selects_only_honest_updates(seed: int) -> None:
    # n = 21 >= 2f + 3 for f = 9: the 9 poisoned updates sit together, far from everyone;
    # their scores count at least n - f - 2 - (f - 1) = 2 honest distances ~ 1e12 each
    updates, low, high = _attack(9, seed)
    agg = MultiKrum(byzantine=9, select=5)
    assert _within(_aggregate(agg, updates), low, high)

    # with 11 of 21 poisoned (a majority) Krum's neighbours are poisoned: it picks them
    updates, low, high = _attack(11, seed)
    assert _aggregate(MultiKrum(byzantine=9, select=5), updates).min() > 1e5


def test_the_mean_breaks_down_at_a_single_attacker() -> None:
    updates, _, _ = _attack(1, 0)
    got = _aggregate(TrimmedMean(trim_fraction=0.0), updates)

    assert got.min() > 1e4


@pytest.mark.parametrize("make", [CoordinateMedian, lambda: TrimmedMean(trim_fraction=0.2),
                                  lambda: MultiKrum(byzantine=0), lambda: NormBound(1.0)])
def test_integer_tensors_are_averaged_by_weight_beside_the_robust_floats(make: object) -> None:
    agg = make()  # type: ignore[operator]
    for w, steps, weight in ((0.1, 1, 1.0), (0.2, 2, 1.0), (0.3, 10, 2.0)):
        agg.add({"w": np.array([w]), "steps": np.array(steps, np.int64)}, weight)

    result = agg.result()

    assert list(result.update) == ["w", "steps"]
    assert float(result.update["steps"]) == pytest.approx((1 + 2 + 20) / 4)  # weighted mean
    assert 0.1 <= float(result.update["w"][0]) <= 0.3
