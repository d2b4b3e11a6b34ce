"""Model parameters as the framework sees them: an ordered mapping of names to NumPy arrays.

Everything that crosses a boundary (wire, strategies, secure aggregation, simulation) speaks
`Params`, so no part of fedcore needs to know which ML framework a client trains with.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]
Params = Mapping[str, Array]
Metrics = Mapping[str, float]


def params_like(params: Params, fill: float = 0.0) -> dict[str, Array]:
    """A new Params with the same names, shapes and dtypes, filled with `fill`."""
    return {name: np.full_like(value, fill) for name, value in params.items()}


def subtract(a: Params, b: Params) -> dict[str, Array]:
    """Element-wise `a - b`; both must have the same names and shapes."""
    _check_same_layout(a, b)
    return {name: np.subtract(a[name], b[name]) for name in a}


def add(a: Params, b: Params) -> dict[str, Array]:
    """Element-wise `a + b`, cast back to `a`'s dtypes."""
    _check_same_layout(a, b)
    return {name: np.add(a[name], b[name]).astype(a[name].dtype, copy=False) for name in a}


def global_norm(params: Params) -> float:
    """The L2 norm of all tensors taken together."""
    total = 0.0
    for value in params.values():
        flat = np.asarray(value, dtype=np.float64).ravel()
        total += float(np.dot(flat, flat))
    return float(np.sqrt(total))


def num_elements(params: Params) -> int:
    """Total number of scalar entries."""
    return int(sum(int(np.asarray(v).size) for v in params.values()))


def _check_same_layout(a: Params, b: Params) -> None:
    if list(a) != list(b):
        raise ValueError(f"parameter names differ: {list(a)} vs {list(b)}")
    for name in a:
        if a[name].shape != b[name].shape:
            raise ValueError(f"shape of {name!r} differs: {a[name].shape} vs {b[name].shape}")
