"""Exact, order-independent summation of float64 arrays, element-wise, in O(size) memory.

`ExactSum` keeps each element's running sum S as an unevaluated pair `hi + lo` of float64s
(Knuth's TwoSum makes every step exact), so S is the exact mathematical sum of the terms added,
whatever their order. An element whose pair cannot hold S exactly (terms whose bits span more
than about 106 binary digits, or a sum beyond the float64 range) moves its exact value into a
Python integer in units of 2^-1074 (every float64 is a whole multiple of that unit); such
elements are rare in practice and cost a dictionary entry each. So that memory stays O(size)
whatever clients send, at most max(4096, size / 64) elements may spill; beyond that an
inexact step rounds (to nearest, in float64 pairs) and is counted in `inexact_steps`: only
then can the result depend on arrival order.

Most steps need no TwoSum: where RNE64(hi + t) is exact (as sums of float32 updates under
integer weights nearly always are), an element is folded as a plain sum after a check that
proves it exact, which leaves the state bit for bit as TwoSum would; the few elements that fail
the check are folded with TwoSum. A block of elements where many fail is folded with TwoSum
alone, this time and for the rest of the sum.

`divide_into_mean(W)` returns RNE64(RNE64(S) / W) element-wise, where RNE64(S) is the float64
nearest to the exact sum (ties to even): a function of the multiset of terms alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from fedcore.protocol.params import Array

F64 = npt.NDArray[np.float64]

_UNIT_EXP = 1074  # every finite float64 is an integer multiple of 2**-1074
_BLOCK = 1 << 14  # elements folded at a time: temporaries stay small whatever the model size
MIN_SPILL = 4096
SPILL_FRACTION = 64  # at most max(MIN_SPILL, size / SPILL_FRACTION) elements spill
_MOSTLY_PLAIN = 16  # a block folds plain first while at most 1/16 of its sums round


class ExactSum:
    """The exact running sum of float64 arrays of one shape."""

    def __init__(self, shape: tuple[int, ...], *, plain_first: bool = True) -> None:
        """`plain_first=False` always folds with TwoSum (same results, slower: for checks)."""
        self.shape = shape
        size = int(np.prod(shape, dtype=np.int64))
        self._hi: F64 = np.zeros(size, np.float64)
        self._lo: F64 = np.zeros(size, np.float64)
        self._spill: dict[int, int] = {}  # flat index -> exact extra value in units of 2**-1074
        self._max_spill = max(MIN_SPILL, size // SPILL_FRACTION)
        self.inexact_steps = 0  # element steps that had to round because the spill was full
        # per block of _BLOCK elements: whether to try the plain (exact-or-nothing) sum first
        self._plain_first = [plain_first] * -(-size // _BLOCK)

    def add(self, values: Array, weight: float = 1.0, *, scratch: Scratch | None = None) -> None:
        """Add the terms RNE64(weight * v) for the values v of `values` (any numeric dtype of
        `shape`; unsigned integers read as two's complement), exactly, block by block.

        `scratch` (`Scratch.for_sizes`), shared by the sums of one aggregation, spares an
        allocation per call; without it one is made."""
        self.add_parts((values,), weight, scratch=scratch)

    def add_parts(self, parts: Sequence[Array], weight: float = 1.0, *,
                  scratch: Scratch | None = None) -> None:
        """`add` of the concatenation of `parts` (each flattened, in order), without building
        it: one sum over every tensor of a model costs one pass of the block loop, not one per
        tensor (small models are dominated by that per-call cost)."""
        flats = []
        for part in parts:
            flat = np.asarray(part).reshape(-1)
            if flat.dtype.kind == "u":
                flat = flat.view(np.dtype(f"i{flat.dtype.itemsize}"))
            flats.append(flat)
        size = sum(flat.size for flat in flats)
        if size != self._hi.size:
            raise ValueError(f"term has {size} elements, the sum {self._hi.size}")
        if scratch is None or scratch.size < min(_BLOCK, size):
            scratch = Scratch(min(_BLOCK, size))
        at, offset = 0, 0  # the part, and the place in it, where the next block's terms start
        for block, start in enumerate(range(0, size, _BLOCK)):
            stop = min(start + _BLOCK, size)
            term = scratch.view(0, stop - start)
            filled = 0
            while filled < stop - start:
                source = flats[at]
                take = min(source.size - offset, stop - start - filled)
                # RNE64(v), as multiply casts
                np.copyto(term[filled:filled + take], source[offset:offset + take],
                          casting="unsafe")
                filled, offset = filled + take, offset + take
                if offset == source.size:
                    at, offset = at + 1, 0
            if weight != 1.0:  # RNE64(1 * v) is v: no pass needed
                np.multiply(term, weight, out=term)
            if not (self._plain_first[block] and self._add_plain_block(start, stop, term, scratch)):
                self._plain_first[block] = False  # many of its sums round: TwoSum from now on
                self._add_block(start, stop, term, scratch)

    def _add_plain_block(self, start: int, stop: int, t: F64, scratch: Scratch) -> bool:
        """Fold the block as hi += t where that is exact and with TwoSum (`_add_some`) where it
        is not; False, changing nothing, when too many elements are not (`_add_block` then).

        s = RNE64(hi + t) is exact iff RNE64(s - hi) == t and RNE64(s - t) == hi (TwoSum's error
        is then (hi - hi) + (t - t) = +0, which leaves lo as it is: the state is bit for bit what
        TwoSum makes; an overflow or a NaN fails both tests). Sums of float32 terms under
        integer weights are nearly always exact in float64: about half the passes of TwoSum."""
        n = stop - start
        hi = self._hi[start:stop]
        s, d = scratch.view(1, n), scratch.view(2, n)
        rounds, wrong = scratch.flags(0, n), scratch.flags(1, n)
        with np.errstate(over="ignore", invalid="ignore"):
            np.add(hi, t, out=s)
            np.subtract(s, hi, out=d)
            np.not_equal(d, t, out=rounds)
            np.subtract(s, t, out=d)
            np.not_equal(d, hi, out=wrong)
        np.logical_or(rounds, wrong, out=rounds)
        if not rounds.any():
            np.copyto(hi, s)
            return True
        inexact = np.flatnonzero(rounds)
        if inexact.size > n // _MOSTLY_PLAIN:
            return False
        old_hi = hi[inexact]
        np.copyto(hi, s)
        self._add_some(start + inexact, old_hi, t[inexact])
        return True

    def _add_some(self, positions: npt.NDArray[np.intp], hi: F64, t: F64) -> None:
        """`_add_block` for a few scattered elements: `positions` in the sum, their old `hi`."""
        lo = self._lo[positions]
        s, e, low, f, tmp = (np.empty_like(t) for _ in range(5))
        with np.errstate(over="ignore", invalid="ignore"):
            _two_sum(hi, t, s, e, f)
            _two_sum(lo, e, low, f, tmp)
            if np.count_nonzero(f):
                local = np.flatnonzero(f)
                self._move_to_spill(positions[local], local, hi, lo, t, s, low)
        self._hi[positions] = s
        self._lo[positions] = low

    def _add_block(self, start: int, stop: int, t: F64, scratch: Scratch) -> None:
        """hi + t = s + e and lo + e = low + f (TwoSum, Knuth); exact where f == 0. An
        overflow makes f NaN, which counts as inexact too."""
        n = stop - start
        hi, lo = self._hi[start:stop], self._lo[start:stop]
        s, e, low, f = (scratch.view(i, n) for i in (1, 2, 3, 4))
        with np.errstate(over="ignore", invalid="ignore"):
            _two_sum(hi, t, s, e, f)  # f: scratch for the first, the error of the second
            _two_sum(lo, e, low, f, scratch.view(5, n))
            if np.count_nonzero(f):  # NaN counts: an overflow is inexact too
                local = np.flatnonzero(f)
                self._move_to_spill(start + local, local, hi, lo, t, s, low)
        np.copyto(hi, s)
        np.copyto(lo, low)

    def divide_into_mean(self, total: float) -> F64:
        """RNE64(RNE64(S) / total), computed in place: the sum is consumed."""
        out, lo = self._hi, self._lo
        for index, extra in self._spill.items():
            if not (np.isfinite(out[index]) and np.isfinite(lo[index])):
                lo[index] = 0.0  # the sum overflowed float64 after spilling: it stays infinite
                continue
            exact = extra + _units(out[index]) + _units(lo[index])
            out[index], lo[index] = _units_to_float(exact), 0.0
        with np.errstate(over="ignore"):
            np.add(out, lo, out=out)  # hi + lo == S exactly, so this is RNE64(S)
        self._lo = np.zeros(0, np.float64)
        self._spill = {}
        np.divide(out, total, out=out)
        return out.reshape(self.shape)

    @property
    def spilled(self) -> int:
        """How many elements hold part of their sum as an exact integer."""
        return len(self._spill)

    def _move_to_spill(
        self, positions: npt.NDArray[np.intp], indices: npt.NDArray[np.intp], hi: F64, lo: F64,
        t: F64, s: F64, low: F64,
    ) -> None:
        """Elements whose step was not exact (`indices` into the arrays given, `positions` in
        the sum): their old value plus the term go to the spill."""
        if len(self._spill) + indices.size > self._max_spill:  # memory stays bounded:
            self.inexact_steps += indices.size  # these steps round (documented limit)
            return
        for at, i in zip(positions.tolist(), indices.tolist(), strict=True):
            moved = _units(hi[i]) + _units(lo[i]) + _units(t[i])
            self._spill[at] = self._spill.get(at, 0) + moved
        s[indices] = 0.0
        low[indices] = 0.0


class Scratch:
    """Six float64 and two boolean buffers of one block, reused for every block of an addition
    (and, given to `ExactSum.add`, for every addition of an aggregation)."""

    def __init__(self, size: int) -> None:
        self.size = max(size, 1)
        self._buffers = np.empty((6, self.size), np.float64)
        self._flags = np.empty((2, self.size), np.bool_)

    @classmethod
    def for_sizes(cls, sizes: Iterable[int]) -> Scratch:
        """Scratch big enough for the blocks of tensors of these sizes."""
        return cls(min(_BLOCK, max(sizes, default=1)))

    def view(self, index: int, n: int) -> F64:
        return self._buffers[index, :n]

    def flags(self, index: int, n: int) -> npt.NDArray[np.bool_]:
        return self._flags[index, :n]


def _two_sum(a: F64, b: F64, s: F64, e: F64, tmp: F64) -> None:
    """Knuth's TwoSum into `s` and `e`: s = RNE64(a + b) and s + e == a + b exactly."""
    np.add(a, b, out=s)
    np.subtract(s, a, out=e)  # e holds bb = s - a for now
    np.subtract(s, e, out=tmp)
    np.subtract(a, tmp, out=tmp)  # a - (s - bb)
    np.subtract(b, e, out=e)  # b - bb
    np.add(tmp, e, out=e)


def _units(value: float | np.floating) -> int:
    """`value` (a finite float64) as an integer number of 2**-1074 units."""
    numerator, denominator = float(value).as_integer_ratio()
    return numerator * ((1 << _UNIT_EXP) // denominator)


def _units_to_float(units: int) -> float:
    """The float64 nearest to `units * 2**-1074` (ties to even; ±inf beyond the range)."""
    try:
        return units / (1 << _UNIT_EXP)  # Python's int division is correctly rounded
    except OverflowError:
        return float("inf") if units > 0 else float("-inf")
