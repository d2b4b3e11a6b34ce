"""Top-k sparsification with error feedback (Stich et al. 2018; Lin et al. 2018, DGC).

Per tensor, only the k = ceil(fraction · size) entries of largest magnitude are sent. What is not
sent is not lost: it is kept as the client's residual and added to its next update before
selecting again (error feedback), so every coordinate's mass eventually reaches the server.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def top_k(acc: F64, fraction: float) -> tuple[npt.NDArray[np.int64], F64]:
    """Indices (ascending) and values of the ceil(fraction · size) largest |entries| of `acc`."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = acc.ravel()
    k = min(flat.size, max(1, math.ceil(fraction * flat.size))) if flat.size else 0
    if k == flat.size:
        idx = np.arange(flat.size, dtype=np.int64)
    else:
        idx = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k:]).astype(
            np.int64)
    return idx, flat[idx].copy()


def sparsify_with_feedback(update: F64, residual: F64 | None, fraction: float) -> tuple[
        npt.NDArray[np.int64], F64, F64]:
    """(indices, values, new residual): top-k of update + residual; the rest is the residual."""
    acc = update.ravel().astype(np.float64, copy=True)
    if residual is not None:
        if residual.shape != acc.shape:
            raise ValueError(f"residual has shape {residual.shape}, the update {acc.shape}")
        acc += residual
    idx, values = top_k(acc, fraction)
    acc[idx] = 0.0
    return idx, values, acc
