"""An empty tensor beside others, under a weight so large that no value of its dtype could be
multiplied safely: there is nothing to overflow, so the update is taken (the fast path for
empty tensors must not fall through to a reduction over nothing)."""

from __future__ import annotations

import numpy as np

from fedcore.aggregate.mean import WeightedMean


def test_an_empty_tensor_under_a_huge_weight_is_taken() -> None:
    agg = WeightedMean()
    agg.add({"empty": np.zeros(0), "w": np.array([1e-300])}, 1e300)
    result = agg.result()
    assert result.update["empty"].shape == (0,)
    np.testing.assert_allclose(result.update["w"], [1e-300])
    assert result.total_weight == 1e300 and result.count == 1


def test_krum_ranks_updates_closer_than_one_apart() -> None:
    # squared distances well below 1: scores over the 2 nearest are 0: 0.10, 0.1: 0.05,
    # 0.3: 0.13, 1: 1.3 -> the most central is 0.1 (distances are floored at 0, not more)
    from fedcore.aggregate.robust import MultiKrum

    agg = MultiKrum(byzantine=0, select=1)
    for v in (0.0, 0.1, 0.3, 1.0):
        agg.add({"w": np.array([v])}, 1.0)
    np.testing.assert_allclose(agg.result().update["w"], [0.1])
