"""Integer and BOOL tensors: wrap-around updates read as signed, exact mean, one rounding,
saturation, and refusal of updates their width cannot express (docs/protocol.md 5.3)."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.mean import WeightedMean
from fedcore.engine.collect import PlainCollector
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.model import RoundModel
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import ResultHeader, TaskKind, TaskResult
from fedcore.protocol.update import check_representable, update_of
from fedcore.strategy import FedAvg


def next_global(global_: np.ndarray, locals_: list[int], weights: list[int], **kw: float) -> list:
    """What the coordinator makes of clients that trained `global_` to `locals_`."""
    agg = WeightedMean()
    for local, weight in zip(locals_, weights, strict=True):
        update = update_of(np.full(global_.shape, local, global_.dtype), global_)
        check_representable("t", update, global_)
        agg.add({"t": update}, float(weight))
    return FedAvg(**kw).apply({"t": global_}, agg.result())["t"].tolist()


def test_int64_mean_rounds_half_to_even() -> None:
    # updates 1 and 2: mean 1.5 rounds to 2 (the issue saw 5 + 1.5 truncated to 6)
    assert next_global(np.array([5], np.int64), [6, 7], [1, 1]) == [7]
    # updates 1 and 4 weighted 3:1: mean 1.75 -> 2; updates 0 and 1: mean 0.5 -> 0 (even)
    assert next_global(np.array([5], np.int64), [6, 9], [3, 1]) == [7]
    assert next_global(np.array([5], np.int64), [5, 6], [1, 1]) == [5]


def test_a_uint8_decrease_travels_as_its_wrapped_byte_and_means_minus() -> None:
    global_ = np.array([200], np.uint8)

    update = update_of(np.array([197], np.uint8), global_)

    assert update.tolist() == [253]  # -3 mod 256, as a Python client's numpy computes it
    # mean(-3, 0) = -1.5 -> -2: 198 (the issue saw 200 + 126.5 wrapped to 70)
    assert next_global(global_, [197, 200], [1, 1]) == [198]


def test_an_increase_beyond_the_range_saturates() -> None:
    # server_lr 3 turns a +5 mean into +15: 120 + 15 saturates at INT8's 127; UINT8 at 0
    assert next_global(np.array([120], np.int8), [125], [1], server_lr=3.0) == [127]
    assert next_global(np.array([3], np.uint8), [1], [1], server_lr=3.0) == [0]


@pytest.mark.parametrize("dtype", ["int64", "uint64"])
def test_64_bit_tensors_are_added_exactly(dtype: str) -> None:
    big = np.iinfo(dtype).max - 10
    global_ = np.array([big], dtype)

    assert next_global(global_, [big + 4], [1]) == [big + 4]  # not rounded through float64


@pytest.mark.parametrize(
    ("dtype", "global_value", "local_value"),
    [("uint8", 200, 50), ("uint8", 10, 200), ("int8", -100, 100), ("int16", 30000, -30000)],
)
def test_a_change_too_large_for_the_width_is_refused(
    dtype: str, global_value: int, local_value: int
) -> None:
    global_ = np.array([global_value], dtype)
    update = update_of(np.array([local_value], dtype), global_)

    with pytest.raises(WireError, match="cannot be represented"):
        check_representable("t", update, global_)


def test_the_largest_representable_changes_pass() -> None:
    global_ = np.array([0, 255], np.uint8)

    update = update_of(np.array([127, 127], np.uint8), global_)  # +127 and -128

    check_representable("t", update, global_)


def test_bool_flips_by_weighted_majority_and_ties_keep() -> None:
    global_ = np.array([False, False, True], np.bool_)
    agg = WeightedMean()
    for local, weight in (([True, True, True], 3), ([False, True, True], 1),
                          ([False, False, False], 4)):
        agg.add({"t": update_of(np.array(local), global_)}, float(weight))

    # flips weighted 3/8, 4/8 and 4/8 (the third element: 3 keep + 1 keep vs 4 flip)
    assert FedAvg().apply({"t": global_}, agg.result())["t"].tolist() == [False, False, True]


def test_bool_update_is_xor() -> None:
    assert update_of(np.array([True, False]), np.array([True, True])).tolist() == [False, True]


def test_the_coordinator_refuses_an_unrepresentable_integer_update_and_changes_nothing() -> None:
    model = RoundModel.of({"t": np.array([7, 200], np.uint8)})
    agg = WeightedMean()
    collector = PlainCollector(TaskKind.TRAIN, model=model, aggregator=agg, target=2,
                               min_results=1, max_payload_bytes=1 << 20)
    header = ResultHeader(client_id="c", task_id="t1", num_examples=1, spec=model.spec)

    with pytest.raises(EngineError, match="cannot be represented") as caught:
        # 100 means +100: a local value of 300 that no UINT8 holds
        collector.accept("c", TaskResult(header=header, tensors={"t": np.array([0, 100], np.uint8)}), 0.0)

    assert caught.value.reason is Reason.INVALID
    assert collector.received == 0
    with pytest.raises(ValueError, match="nothing"):
        agg.result()


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32",
                                   "int64", "uint64"])
def test_the_range_check_agrees_with_exact_integers_at_the_edges(dtype: str) -> None:
    info = np.iinfo(dtype)
    bits = 8 * np.dtype(dtype).itemsize
    signed = np.dtype(f"i{bits // 8}")
    edges = [info.min, info.min + 1, -1, 0, 1, info.max - 1, info.max]
    changes = [np.iinfo(signed).min, np.iinfo(signed).min + 1, -1, 0, 1,
               np.iinfo(signed).max - 1, np.iinfo(signed).max]
    for g in edges:
        if not info.min <= g <= info.max:
            continue
        for change in changes:
            global_ = np.array([g], dtype)
            update = np.array([change], signed).view(dtype)
            fits = info.min <= g + change <= info.max
            if fits:
                check_representable("t", update, global_)
            else:
                with pytest.raises(WireError, match="cannot be represented"):
                    check_representable("t", update, global_)


def test_the_coordinator_refuses_an_update_whose_weighted_term_overflows() -> None:
    model = RoundModel.of({"t": np.zeros(1, np.float64)})
    collector = PlainCollector(TaskKind.TRAIN, model=model, aggregator=WeightedMean(), target=2,
                               min_results=1, max_payload_bytes=1 << 20)
    header = ResultHeader(client_id="c", task_id="t1", num_examples=1 << 40, spec=model.spec)

    with pytest.raises(EngineError, match="not finite") as caught:  # 1e300 * 2**40 > 2**1024
        collector.accept("c", TaskResult(header=header, tensors={"t": np.array([1e300])}), 0.0)

    assert caught.value.reason is Reason.INVALID and collector.received == 0
