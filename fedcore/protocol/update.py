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
    info = np.iinfo(dtype.type)  # type: ignore[type-var]
    implied = global_.astype(object).reshape(-1) + signed_update(update).astype(object).reshape(-1)
    bad = np.flatnonzero((implied < info.min) | (implied > info.max))
    if bad.size:
        i = int(bad[0])
        raise WireError(
            f"update of {name!r} cannot be represented: element {i} is global "
            f"{global_.reshape(-1)[i]} + update {signed_update(update).reshape(-1)[i]} = "
            f"{implied[i]}, outside the {dtype} range [{info.min}, {info.max}] (an integer "
            "update is local - global wrapped to the dtype's width and read as signed; a change "
            f"of {1 << (8 * dtype.itemsize - 1)} or more does not fit)"
        )


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
