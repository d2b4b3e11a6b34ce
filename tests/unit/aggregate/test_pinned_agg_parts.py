"""Updates of several tensors folded block by block: tensors that start mid-block, span a block
boundary, or end one, are summed element for element as their concatenation would be (the
weighted mean of each tensor is the reference mean, whatever the layout); and a metric whose
clients all carry weight 0 has no mean (it is left out, not divided by zero)."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.exact import ExactSum
from fedcore.aggregate.mean import WeightedMean
from fedcore.aggregate.metrics import MetricsMean

_BLOCK = 1 << 14  # fedcore.aggregate.exact's block: the layouts below straddle its boundaries


@pytest.mark.parametrize("sizes", [[10, _BLOCK + 10, 5],  # starts mid-block, spans into the next
                                   [_BLOCK + 10, 5, 7],   # ends 10 into a block, others follow
                                   [3, _BLOCK - 3, 2 * _BLOCK + 1, 1]])  # ends a block exactly
def test_a_multi_tensor_update_is_the_mean_of_each_tensor(sizes: list[int]) -> None:
    rng = np.random.default_rng(sum(sizes))
    updates = [({f"t{i}": rng.normal(size=size).astype(np.float32)
                 for i, size in enumerate(sizes)}, float(w)) for w in (3, 5)]
    agg = WeightedMean()
    for update, weight in updates:
        agg.add(update, weight)

    result = agg.result().update

    for name in updates[0][0]:
        expected = sum(np.float64(u[name]) * w for u, w in updates) / 8.0
        np.testing.assert_array_equal(result[name], expected)


def test_add_parts_is_add_of_the_concatenation() -> None:
    rng = np.random.default_rng(5)
    sizes = [7, _BLOCK + 2, 30]
    parts = [rng.normal(size=size) for size in sizes]
    by_parts, whole = ExactSum((sum(sizes),)), ExactSum((sum(sizes),))

    by_parts.add_parts(parts, 3.0)
    whole.add(np.concatenate(parts), 3.0)

    assert by_parts.divide_into_mean(1.0).tobytes() == whole.divide_into_mean(1.0).tobytes()


def test_a_metric_from_zero_weight_clients_only_has_no_mean() -> None:
    mean = MetricsMean()
    mean.add({"loss": 2.0, "accuracy": 0.5}, 0.0)  # a client that evaluated no examples
    mean.add({"loss": 4.0}, 3.0)

    assert mean.result() == {"loss": 4.0}
