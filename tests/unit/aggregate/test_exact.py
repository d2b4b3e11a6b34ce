"""The defined averaging arithmetic: exact sums, one rounding, any arrival order same bytes."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcore.aggregate.exact import MIN_SPILL, ExactSum
from fedcore.aggregate.mean import WeightedMean
from fedcore.strategy import FedAvg


def spread_updates(seed: int, n: int, size: int) -> list[tuple[np.ndarray, int]]:
    """float32 updates whose magnitudes span ~20 orders, and example counts up to 2**20."""
    rng = np.random.default_rng(seed)
    scale = np.float32(10.0) ** rng.integers(-12, 8, size=(n, size)).astype(np.float32)
    values = rng.normal(size=(n, size)).astype(np.float32) * scale
    return [(values[i], int(rng.integers(1, 1 << 20))) for i in range(n)]


def mean_in(order: list[int], updates: list[tuple[np.ndarray, int]]) -> bytes:
    agg = WeightedMean()
    for i in order:
        agg.add({"w": updates[i][0].copy()}, float(updates[i][1]))
    params = {"w": np.zeros(updates[0][0].shape, np.float32)}
    return FedAvg().apply(params, agg.result())["w"].tobytes()


def reference_mean(updates: list[tuple[np.ndarray, int]], j: int) -> float:
    """The doc's definition with exact rationals: RNE64(RNE64(S) / W), S = sum RNE64(w u)."""
    exact_sum = sum(Fraction(float(np.float64(u[j]) * w)) for u, w in updates)
    total = float(sum(w for _, w in updates))
    return float(exact_sum) / total


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_any_arrival_order_gives_identical_bytes(seed: int) -> None:
    updates = spread_updates(seed, n=12, size=3000)
    rng = np.random.default_rng(seed)

    results = {mean_in(list(rng.permutation(len(updates))), updates) for _ in range(6)}

    assert len(results) == 1


def test_float32_summation_in_arrival_order_would_differ() -> None:
    # the old arithmetic (a float32 running sum) is order-dependent on the same data: the test
    # above is not trivially true
    updates = spread_updates(1, n=12, size=3000)

    def float32_sum(order: list[int]) -> bytes:
        acc = np.zeros(3000, np.float32)
        for i in order:
            acc += updates[i][0] * np.float32(updates[i][1])
        return acc.tobytes()

    assert float32_sum(list(range(12))) != float32_sum(list(reversed(range(12))))


def test_the_mean_is_the_documented_rounding_of_the_exact_sum() -> None:
    updates = spread_updates(7, n=9, size=200)
    agg = WeightedMean()
    for u, w in updates:
        agg.add({"w": u.copy()}, float(w))

    mean = agg.result().update["w"]

    assert [float(mean[j]) for j in range(200)] == [reference_mean(updates, j) for j in range(200)]


def test_cancellation_is_exact() -> None:
    # 1e16 + 1 - 1e16 is 0 in float64 arithmetic, 1 exactly
    acc = ExactSum((1,))
    for v in (1e16, 1.0, -1e16):
        acc.add(np.array([v]))

    assert acc.divide_into_mean(1.0)[0] == 1.0


def test_terms_beyond_two_doubles_spill_to_exact_integers() -> None:
    acc = ExactSum((2,))
    for v in (1e300, 1.0, 1e-300, -1e300, -1.0):
        acc.add(np.array([v, 0.0]))

    assert acc.spilled == 1
    assert acc.divide_into_mean(1.0)[0] == 1e-300


def test_a_sum_beyond_the_float64_range_is_still_exact() -> None:
    acc = ExactSum((1,))
    for v in (1.5e308, 1.5e308, -1.5e308):
        acc.add(np.array([v]))

    assert acc.divide_into_mean(1.0)[0] == 1.5e308


def test_spill_is_bounded_and_counted() -> None:
    # adversarial magnitudes in every element: memory stays bounded, the rounding is reported
    size = MIN_SPILL * 2
    agg = WeightedMean()
    for v in (1e200, 1e-200, 1e100, 1e-100):
        agg.add({"w": np.full(size, v)}, 1.0)

    result = agg.result()

    assert result.measurements["inexact_sum_steps"] > 0
    assert np.isfinite(result.update["w"]).all()


def test_a_weight_that_overflows_the_term_is_refused_and_changes_nothing() -> None:
    agg = WeightedMean()
    agg.add({"w": np.array([1.0])}, 1.0)

    with pytest.raises(ValueError, match="not finite"):
        agg.add({"w": np.array([1e300])}, 1e10)

    assert agg.result().update["w"][0] == 1.0


def test_folding_memory_does_not_grow_with_the_number_of_clients() -> None:
    size = 1 << 19  # 2 MiB of float32

    def peak(clients: int) -> int:
        rng = np.random.default_rng(0)
        tracemalloc.start()
        agg = WeightedMean()
        for _ in range(clients):
            agg.add({"w": rng.standard_normal(size, dtype=np.float32)}, 3.0)
        agg.result()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    few, many = peak(2), peak(16)

    # the exact sum is 16 bytes per element (a float64 pair), the update being folded 4, plus
    # one block's temporaries (~2 MiB): about 25 bytes per element here, whatever the number
    # of clients
    assert many < 1.1 * few
    assert many < 28 * size


def test_a_huge_weight_on_float32_values_is_refused_too() -> None:
    agg = WeightedMean()

    with pytest.raises(ValueError, match="not finite"):
        agg.add({"w": np.array([3e38], np.float32)}, 1e300)

    agg.add({"w": np.array([1.0], np.float32)}, 1e300)  # small values under the same weight fold
    assert agg.result().update["w"][0] == 1.0


def test_a_refused_first_update_does_not_fix_the_layout() -> None:
    agg = WeightedMean()
    with pytest.raises(ValueError, match="not finite"):
        agg.add({"a": np.array([1e300])}, 1e10)

    agg.add({"b": np.ones(3)}, 1.0)  # other names and shapes: the refused one left nothing

    assert list(agg.result().update) == ["b"]
