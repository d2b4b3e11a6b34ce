"""Weighted mean as a running sum: FedAvg's aggregation in O(model) memory."""

from __future__ import annotations

import numpy as np

from fedcore.aggregate.base import AggregateResult
from fedcore.protocol.params import Array


class WeightedMean:
    """Running weighted sum of updates, divided by the total weight at the end.

    The sum is kept in float64 for float64 inputs and float32 otherwise; each update is
    scaled in place (the caller hands over ownership), so folding allocates nothing.
    """

    def __init__(self) -> None:
        self._sum: dict[str, Array] | None = None
        self._total_weight = 0.0
        self._count = 0
        self._result: AggregateResult | None = None

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Fold `weight * update` into the running sum."""
        if self._result is not None:
            raise ValueError("the mean was already taken; start a new WeightedMean per round")
        if not np.isfinite(weight) or weight <= 0:
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        if self._sum is None:  # the first update becomes the running sum where it can
            self._sum = {name: _first_term(value, weight) for name, value in update.items()}
            self._total_weight, self._count = float(weight), 1
            return
        if list(update) != list(self._sum):
            raise ValueError("update names differ from the first update's")
        for name, value in update.items():  # check all before folding any: a refusal changes nothing
            expected = self._sum[name].shape
            if value.shape != expected:
                raise ValueError(f"shape of {name!r} is {value.shape}, expected {expected}")
        for name, value in update.items():
            acc = self._sum[name]
            if value.dtype == acc.dtype and value.flags.writeable:
                np.multiply(value, weight, out=value)
                np.add(acc, value, out=acc)
            else:
                np.add(acc, np.multiply(np.asarray(value, dtype=acc.dtype), weight), out=acc)
        self._total_weight += float(weight)
        self._count += 1

    def result(self) -> AggregateResult:
        """The weighted mean of everything added so far."""
        if self._sum is None:
            raise ValueError("no updates were added; a mean of nothing is undefined")
        if self._result is None:  # divide the running sum in place: no second model-size copy
            for acc in self._sum.values():
                np.divide(acc, self._total_weight, out=acc)
            self._result = AggregateResult(
                update=self._sum, count=self._count, total_weight=self._total_weight
            )
        return self._result


def _first_term(value: Array, weight: float) -> Array:
    """`weight * value` in the accumulator dtype, reusing `value`'s memory when it may."""
    dtype = np.float64 if value.dtype == np.float64 else np.float32
    if value.dtype == dtype and value.flags.writeable and value.flags.c_contiguous:
        np.multiply(value, weight, out=value)
        return value
    scaled: Array = np.multiply(np.asarray(value, dtype=dtype), weight)
    return scaled
