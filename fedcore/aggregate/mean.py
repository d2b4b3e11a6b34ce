"""Weighted mean as an exact running sum: FedAvg's aggregation in O(model) memory.

The arithmetic is defined (docs/protocol.md, section 5.3) so that any arrival order gives
identical bytes. For each element, with client i's update value u_i (read as float64; integer
updates as two's-complement signed, see `fedcore.protocol.update`) and weight w_i:

    term_i = RNE64(w_i * u_i)                 one rounding, a function of client i alone
    S      = sum_i term_i                     exact (`ExactSum`), hence order-independent
    W      = RNE64(sum_i w_i)                 exact sum of the weights, rounded once
    mean   = RNE64(RNE64(S) / W)              float64

RNE64 is IEEE 754 rounding to the nearest float64, ties to even. The mean is returned as
float64; the strategy rounds the next model once to each tensor's dtype
(`fedcore.protocol.update.apply_mean`).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from fedcore.aggregate.base import AggregateResult
from fedcore.aggregate.exact import ExactSum, Scratch
from fedcore.protocol.params import Array


class WeightedMean:
    """Running exact weighted sum of updates, divided by the total weight at the end.

    Memory: two float64 arrays the size of the model (the exact sum of every tensor, laid end
    to end, as a hi/lo pair; the mean reuses the first), whatever the number of clients;
    updates are read block by block, never copied whole.
    """

    def __init__(self) -> None:
        self._shapes: dict[str, tuple[int, ...]] | None = None  # the first update's layout
        self._sum: ExactSum | None = None
        self._scratch: Scratch | None = None
        self._int_weight = 0  # integral weights (example counts) summed as ints: exact, cheap
        self._other_weight = Fraction(0)
        self._count = 0
        self._result: AggregateResult | None = None

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Fold `weight * update` into the running sum; a refusal changes nothing."""
        if self._result is not None:
            raise ValueError("the mean was already taken; start a new WeightedMean per round")
        if not np.isfinite(weight) or weight <= 0:
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        if self._shapes is not None:
            if list(update) != list(self._shapes):
                raise ValueError("update names differ from the first update's")
            for name, value in update.items():
                expected = self._shapes[name]
                if np.shape(value) != expected:
                    raise ValueError(f"shape of {name!r} is {np.shape(value)}, expected {expected}")
        for name, value in update.items():  # check all before folding any
            _check_term_finite(name, value, weight)
        if self._shapes is None or self._sum is None:  # the first update fixes the layout
            self._shapes = {name: np.shape(value) for name, value in update.items()}
            size = sum(int(np.size(v)) for v in update.values())
            self._sum = ExactSum((size,))
            self._scratch = Scratch.for_sizes([size])
        self._sum.add_parts(list(update.values()), weight, scratch=self._scratch)
        if float(weight).is_integer():
            self._int_weight += int(weight)
        else:
            self._other_weight += Fraction(weight)
        self._count += 1

    def result(self) -> AggregateResult:
        """The weighted mean (float64 tensors) of everything added so far."""
        if self._result is None:
            if self._shapes is None or self._sum is None:
                raise ValueError("no updates were added; a mean of nothing is undefined")
            total = float(self._int_weight + self._other_weight)  # RNE64 of the exact sum
            inexact = self._sum.inexact_steps
            flat = self._sum.divide_into_mean(total)
            update: dict[str, Array] = {}
            offset = 0
            for name, shape in self._shapes.items():
                size = int(np.prod(shape, dtype=np.int64))
                update[name] = flat[offset:offset + size].reshape(shape)
                offset += size
            self._sum = None
            self._result = AggregateResult(
                update=update, count=self._count, total_weight=total,
                measurements={"inexact_sum_steps": float(inexact)} if inexact else {},
            )
        return self._result


def _check_term_finite(name: str, value: Array, weight: float) -> None:
    """Raise `ValueError` if RNE64(weight * v) overflows for some value v of `value`."""
    dtype = value.dtype
    if dtype.kind == "f":
        bound = float(np.finfo(dtype.type).max)  # type: ignore[type-var]
    elif dtype.kind in "iu":
        bound = float(2 ** (8 * dtype.itemsize))
    else:
        bound = 1.0
    if value.size == 0 or math.isfinite(bound * weight):
        return  # no value of this dtype can overflow: skip the pass over the data
    largest = max(abs(float(np.max(value))), abs(float(np.min(value))))
    if not math.isfinite(largest * weight):
        raise ValueError(f"update {name!r} times weight {weight} is not finite in float64")
