"""What a TRAIN result's update is, per dtype, and how the coordinator applies a mean of them.

The rules (docs/protocol.md, section 5.3), shared by the client (`update_of`) and the
coordinator (`update_values`, `check_representable`, `apply_mean`):

- floating point: update = local - global, computed in the tensor's dtype (IEEE 754, round
  to nearest even); the coordinator reads it as float64 (exactly).
- integers: update = (local - global) modulo 2^bits, i.e. wrap-around subtraction in the
  dtype, and it means the two's-complement *signed* integer of the same width (a UINT8 253 is
  -3). The coordinator refuses an update whose implied local value `global + update` lies
  outside the dtype's range: that is exactly the case where the true difference did not fit
  the width (e.g. |local - global| >= 128 for UINT8), so no update is ever misread.
- BOOL: update = local XOR global (true where the client flipped the value); read as 0 or 1.

Applying a float64 mean m (with the server's step size `scale`): floats become
RNE_dtype(RNE64(global + RNE64(scale * m))); integers become
saturate(global + round_half_even(RNE64(scale * m))), the sum taken exactly; BOOL becomes
global XOR (round_half_even(m) == 1), i.e. a value flips only when more than half of the
weight flipped it.
"""

from __future__ import annotations

import numpy as np

from fedcore.protocol.errors import WireError
from fedcore.protocol.params import Array

_BLOCK = 1 << 16


def update_of(local: Array, global_: Array) -> Array:
    """The update a client sends for one tensor: `local - global` as defined above."""
    dtype = global_.dtype
    if dtype == np.bool_:
        return np.logical_xor(local, global_)
    if np.issubdtype(dtype, np.integer):
        with np.errstate(over="ignore"):  # wrap modulo 2**bits, by definition
            wrapped: Array = np.subtract(np.asarray(local, dtype=dtype), global_, dtype=dtype)
        return np.asarray(wrapped)
    return np.subtract(local, global_).astype(dtype, copy=False)


def update_values(update: Array) -> Array:
    """The update's values as float64 (integers read as same-width two's complement)."""
    dtype = update.dtype
    if np.issubdtype(dtype, np.unsignedinteger):
        signed = np.dtype(f"i{dtype.itemsize}")
        return np.asarray(update).view(signed).astype(np.float64)
    return np.asarray(update, dtype=np.float64)


def signed_update(update: Array) -> Array:
    """An integer update as the signed integers it means (a view; other dtypes unchanged)."""
    dtype = update.dtype
    if np.issubdtype(dtype, np.unsignedinteger):
        return np.asarray(update).view(np.dtype(f"i{dtype.itemsize}"))
    return update


def check_representable(name: str, update: Array, global_: Array) -> None:
    """Raise `WireError` if an integer update implies a local value outside the dtype's range."""
    dtype = global_.dtype
    if dtype == np.bool_ or not np.issubdtype(dtype, np.integer):
        return
    g, d = global_.reshape(-1), signed_update(np.asarray(update)).reshape(-1)
    bad = np.flatnonzero(_out_of_range(g, d))
    if bad.size:
        info = np.iinfo(dtype.type)  # type: ignore[type-var]
        i = int(bad[0])
        raise WireError(
            f"update of {name!r} cannot be represented: element {i} is global {int(g[i])} + "
            f"update {int(d[i])} = {int(g[i]) + int(d[i])}, outside the {dtype} range "
            f"[{info.min}, {info.max}] (an integer update is local - global wrapped to the "
            f"dtype's width and read as signed; a change of {1 << (8 * dtype.itemsize - 1)} or "
            "more does not fit)"
        )


def _out_of_range(g: Array, d: Array) -> Array:
    """Where `g + d` (exact; `d` the signed reading of the update) leaves `g`'s dtype."""
    if g.dtype.itemsize <= 4:
        info = np.iinfo(g.dtype.type)  # type: ignore[type-var]
        implied = g.astype(np.int64) + d.astype(np.int64)
        mask: Array = (implied < info.min) | (implied > info.max)
        return mask
    with np.errstate(over="ignore"):
        if np.issubdtype(g.dtype, np.signedinteger):  # int64 overflows where the sign flips
            gs, ds = g.view(np.int64), d.view(np.int64)
            flipped = np.not_equal(np.less(np.add(gs, ds), 0), np.less(gs, 0))
            same_sign: Array = np.logical_and(np.equal(np.less(gs, 0), np.less(ds, 0)), flipped)
            return same_sign
        gu, du = g.view(np.uint64), d.view(np.uint64)  # uint64 plus d modulo 2**64
        total = np.add(gu, du)
        wrapped: Array = np.where(np.less(d.view(np.int64), 0), np.greater(total, gu),
                                  np.less(total, gu))
        return wrapped


def apply_mean(global_: Array, mean: Array, scale: float = 1.0) -> Array:
    """The next value of one tensor: `global + scale * mean` by the rules above."""
    dtype = global_.dtype
    mean64 = np.asarray(mean, dtype=np.float64)
    if dtype == np.bool_:
        flipped: Array = np.logical_xor(global_, np.rint(mean64) != 0)
        return flipped
    if np.issubdtype(dtype, np.integer):
        step = mean64 if scale == 1.0 else np.multiply(mean64, scale)
        return _saturating_add(global_, np.rint(step))
    out = np.empty(global_.shape, dtype)
    flat_out, flat_g, flat_m = out.reshape(-1), global_.reshape(-1), mean64.reshape(-1)
    for start in range(0, flat_out.size, _BLOCK):  # float64 temporaries of one block only
        block = slice(start, start + _BLOCK)
        step = flat_m[block] if scale == 1.0 else np.multiply(flat_m[block], scale)
        flat_out[block] = np.add(flat_g[block].astype(np.float64), step)  # RNE to dtype
    return out


def _saturating_add(global_: Array, step: Array) -> Array:
    """`global + step` (step whole float64 numbers) computed exactly, clamped to the dtype."""
    info = np.iinfo(global_.dtype.type)  # type: ignore[type-var]
    span = float(int(info.max) - int(info.min))
    step = np.clip(step, -span, span)  # beyond this every result saturates anyway
    if global_.dtype.itemsize <= 4:  # |global| + |step| < 2**34: exact in float64
        exact = np.add(global_.astype(np.float64), step)
        return np.clip(exact, info.min, info.max).astype(global_.dtype)
    flat = [
        min(max(g + int(s), int(info.min)), int(info.max))
        for g, s in zip(global_.reshape(-1).tolist(), step.reshape(-1).tolist(), strict=True)
    ]
    return np.asarray(flat, dtype=global_.dtype).reshape(global_.shape)
