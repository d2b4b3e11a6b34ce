"""Stochastic uniform quantisation (QSGD-style, per tensor over [min, max]).

A tensor x is mapped to levels lo + q·step, q in {0, ..., 2^b - 1}, step = (max - min) / (2^b - 1);
each value rounds up with probability equal to its fractional position between two levels, so the
decoded value is an unbiased estimate of x (E[lo + q·step] = x exactly, in float64), with
variance at most step²/4 per coordinate. Codes are packed 8, 2 or 8-per-byte for 8, 4 and 1 bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BITS = (1, 4, 8)


@dataclass(frozen=True, slots=True)
class Quantized:
    """One tensor's codes: `codes` packed (uint8), the range [lo, step] as float64, `size`."""

    codes: npt.NDArray[np.uint8]
    lo: float
    step: float
    size: int
    bits: int


def packed_bytes(size: int, bits: int) -> int:
    """Bytes that `size` codes of `bits` bits take packed."""
    return math.ceil(size * bits / 8)


def quantize(x: npt.ArrayLike, bits: int, rng: np.random.Generator) -> Quantized:
    """Quantise `x` (flattened) to `bits` bits with stochastic rounding drawn from `rng`.

    Raises:
        ValueError: `bits` not in (1, 4, 8), or non-finite entries.
    """
    if bits not in BITS:
        raise ValueError(f"bits must be one of {BITS}, got {bits}")
    flat = np.asarray(x, np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise ValueError("cannot quantise non-finite values")
    levels = (1 << bits) - 1
    if flat.size == 0:
        return Quantized(np.zeros(0, np.uint8), 0.0, 0.0, 0, bits)
    lo, hi = float(flat.min()), float(flat.max())
    step = (hi - lo) / levels
    if not math.isfinite(step):
        raise ValueError("the values' range overflows float64; clip the update first")
    if step == 0:
        q = np.zeros(flat.size, np.uint8)
    else:
        y = np.clip((flat - lo) / step, 0, levels)
        low = np.floor(y)
        q = np.minimum(low + (rng.random(flat.size) < (y - low)), levels).astype(np.uint8)
    return Quantized(pack(q, bits), lo, step, int(flat.size), bits)


def dequantize(qt: Quantized) -> npt.NDArray[np.float64]:
    """The float64 values lo + q·step (flat)."""
    q = unpack(qt.codes, qt.bits, qt.size)
    return qt.lo + q.astype(np.float64) * qt.step


def pack(q: npt.NDArray[np.uint8], bits: int) -> npt.NDArray[np.uint8]:
    """Codes in [0, 2^bits) packed little-end first into bytes."""
    if bits == 8:
        return q.astype(np.uint8, copy=True)
    if bits == 1:
        return np.packbits(q.astype(np.uint8), bitorder="little")
    padded = np.zeros(2 * math.ceil(q.size / 2), np.uint8)
    padded[: q.size] = q
    return (padded[0::2] | (padded[1::2] << 4)).astype(np.uint8)


def unpack(codes: npt.NDArray[np.uint8], bits: int, size: int) -> npt.NDArray[np.uint8]:
    """The first `size` codes of `bits` bits from `codes`.

    Raises:
        ValueError: `codes` has not exactly `packed_bytes(size, bits)` bytes.
    """
    if codes.size != packed_bytes(size, bits):
        raise ValueError(f"{codes.size} code bytes for {size} values of {bits} bits, expected "
                         f"{packed_bytes(size, bits)}")
    if bits == 8:
        return codes
    if bits == 1:
        return np.unpackbits(codes, count=size, bitorder="little")
    out = np.empty(2 * codes.size, np.uint8)
    out[0::2] = codes & 0x0F
    out[1::2] = codes >> 4
    return out[:size]
