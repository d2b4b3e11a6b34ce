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


def _state(acc: ExactSum) -> tuple[bytes, bytes, dict[int, int], int]:
    return acc._hi.tobytes(), acc._lo.tobytes(), dict(acc._spill), acc.inexact_steps


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([1, 7, 2000, (1 << 14) + 3]))
def test_plain_sums_leave_the_state_bit_for_bit_as_two_sum_does(seed: int, size: int) -> None:
    # the plain path is taken only where it is exact; then hi, lo (signs of zero included),
    # the spill and the count of inexact steps are what TwoSum alone makes of the same terms
    rng = np.random.default_rng(seed)
    small = size <= 2000  # spills and overflows stay within the spill's bound
    terms: list[tuple[np.ndarray, float]] = []
    for _ in range(10):
        kind = rng.integers(0, 4 if small else 3)
        if kind == 0:  # ordinary float32 updates, integer weights: the plain path holds
            values = rng.normal(size=size).astype(np.float32)
        elif kind == 1:  # magnitudes spanning many orders: sums round (TwoSum), some spill
            spread = 20 if small else 8
            scale = 10.0 ** rng.integers(-spread, spread, size)
            values = (rng.normal(size=size) * scale).astype(np.float32)
        elif kind == 2:  # zeros of both signs, or exact cancellation of the first term
            values = np.where(rng.random(size) < 0.5, -0.0, 0.0).astype(np.float32)
        else:  # float64 near the top of the range: sums overflow, which is inexact too
            values = rng.choice([1e308, -1e308, 3.0], size=size)
        weight = 1.0 if kind == 3 else float(rng.integers(1, 1 << 20))
        if kind == 2 and terms and rng.random() < 0.5:
            values, weight = -terms[0][0], terms[0][1]
        terms.append((values, weight))
    fast, slow = ExactSum((size,)), ExactSum((size,), plain_first=False)
    for values, weight in terms:
        fast.add(values, weight)
        slow.add(values, weight)
        assert _state(fast) == _state(slow)
    assert fast.divide_into_mean(7.0).tobytes() == slow.divide_into_mean(7.0).tobytes()


def test_a_block_whose_plain_sum_rounds_is_folded_with_two_sum() -> None:
    acc = ExactSum((3,))
    acc.add(np.array([1.0, 2.0, 3.0]))
    acc.add(np.array([2.0**-60, 0.0, 0.0]))  # 1 + 2**-60 rounds in float64: TwoSum keeps it

    assert acc._lo.tolist() == [2.0**-60, 0.0, 0.0]
    assert acc.divide_into_mean(1.0).tolist() == [1.0, 2.0, 3.0]


def test_a_few_rounding_sums_in_a_plain_block_are_folded_with_two_sum_and_spill() -> None:
    size = 4000
    base = np.arange(1, size + 1, dtype=np.float64)
    tiny = np.zeros(size)
    tiny[5], tiny[9] = 2.0**-60, 2.0**-60  # 1 + 2**-60 rounds: TwoSum keeps it in lo
    tinier = np.zeros(size)
    tinier[9] = 2.0**-200  # beyond hi + lo: element 9 spills to an exact integer
    fast, slow = ExactSum((size,)), ExactSum((size,), plain_first=False)
    for acc in (fast, slow):
        for term in (base, tiny, tinier, -base):
            acc.add(term)

    assert _state(fast) == _state(slow)
    assert fast.spilled == 1 and fast._lo[5] == 2.0**-60
    assert all(fast._plain_first)  # two rounding sums in 4000 keep the block on the plain path
    mean = fast.divide_into_mean(1.0)
    assert mean[5] == 2.0**-60 and mean[9] == 2.0**-60 + 2.0**-200 and not mean[10]
