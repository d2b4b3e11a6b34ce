"""WeightedMean: a streaming weighted mean equal to the batch one (arithmetic: test_exact.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedcore.aggregate.mean import WeightedMean


def fold(updates: list[dict[str, np.ndarray]], weights: list[float]) -> WeightedMean:
    agg = WeightedMean()
    for update, weight in zip(updates, weights, strict=True):
        agg.add({k: v.copy() for k, v in update.items()}, weight)
    return agg


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    weights=st.lists(st.floats(min_value=1e-3, max_value=1e4), min_size=1, max_size=8),
)
def test_streaming_mean_equals_batch_weighted_mean(seed: int, weights: list[float]) -> None:
    rng = np.random.default_rng(seed)
    updates = [{"w": rng.normal(size=(3, 2)), "b": rng.normal(size=4)} for _ in weights]

    result = fold(updates, weights).result()

    for name in ("w", "b"):
        batch = np.average(np.stack([u[name] for u in updates]), axis=0, weights=weights)
        np.testing.assert_allclose(result.update[name], batch, rtol=1e-10, atol=1e-12)


def test_hand_computed_mean() -> None:
    updates = [{"w": np.array([1.0, 0.0])}, {"w": np.array([0.0, 3.0])}]

    result = fold(updates, [1, 3]).result()

    np.testing.assert_array_equal(result.update["w"], [0.25, 2.25])
    assert (result.count, result.total_weight) == (2, 4.0)


def test_the_mean_is_float64_whatever_the_update_dtype() -> None:
    result = fold([{"w": np.ones(2, np.float32), "n": np.ones(2, np.int8)}], [2.0]).result()

    assert result.update["w"].dtype == np.float64
    assert result.update["n"].dtype == np.float64


def test_float64_updates_accumulate_in_float64() -> None:
    result = fold([{"w": np.full(2, 1 + 1e-12)}], [1.0]).result()

    assert result.update["w"].dtype == np.float64
    assert result.update["w"][0] == 1 + 1e-12


def test_float16_updates_are_accumulated_in_float32() -> None:
    result = fold(
        [{"w": np.full(2, 2048, np.float16)}] * 2 + [{"w": np.ones(2, np.float16)}], [1.0, 1.0, 1.0]
    ).result()

    np.testing.assert_allclose(result.update["w"], (2048 * 2 + 1) / 3, rtol=1e-6)


def test_empty_result_raises() -> None:
    with pytest.raises(ValueError, match="nothing"):
        WeightedMean().result()


@pytest.mark.parametrize("weight", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_weight_raises_and_changes_nothing(weight: float) -> None:
    agg = fold([{"w": np.ones(2)}], [1.0])

    with pytest.raises(ValueError, match="weight"):
        agg.add({"w": np.full(2, 5.0)}, weight)

    assert (agg.result().count, agg.result().total_weight) == (1, 1.0)
    np.testing.assert_array_equal(agg.result().update["w"], [1.0, 1.0])


def test_mismatched_names_raise() -> None:
    agg = fold([{"w": np.ones(2)}], [1.0])

    with pytest.raises(ValueError, match="names"):
        agg.add({"v": np.ones(2)}, 1.0)


def test_mismatched_shape_raises() -> None:
    agg = fold([{"w": np.ones(2)}], [1.0])

    with pytest.raises(ValueError, match="'w'"):
        agg.add({"w": np.ones(3)}, 1.0)


def test_mismatched_shape_in_a_later_tensor_changes_nothing() -> None:
    agg = fold([{"a": np.ones(2), "b": np.ones(2)}], [1.0])

    with pytest.raises(ValueError, match="'b'"):
        agg.add({"a": np.full(2, 9.0), "b": np.ones(3)}, 1.0)

    result = agg.result()
    assert (result.count, result.total_weight) == (1, 1.0)
    np.testing.assert_array_equal(result.update["a"], [1.0, 1.0])


def test_read_only_update_is_folded_without_writing_to_it() -> None:
    frozen = np.full(2, 3.0, np.float32)
    frozen.flags.writeable = False
    agg = WeightedMean()

    agg.add({"a": np.ones(2, np.float32), "b": frozen}, 2.0)

    np.testing.assert_array_equal(agg.result().update["b"], [3.0, 3.0])
    np.testing.assert_array_equal(frozen, [3.0, 3.0])
