"""Tensor and model layouts: names, dtypes and shapes, and the checks between two layouts.

A `ModelSpec` is what every model exchange announces before its bytes (`fedcore.wire.tensor`
encodes the bytes; the coordinator pins a run's spec and refuses any other).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedcore.protocol.errors import WireError
from fedcore.protocol.params import Params

SUPPORTED_DTYPES: tuple[np.dtype[np.generic], ...] = tuple(
    np.dtype(name)
    for name in (
        "float32", "float64", "float16", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool",
    )
)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One tensor's layout. `dtype` is a native NumPy dtype; bytes travel little-endian."""

    name: str
    dtype: np.dtype[np.generic]
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.dtype not in SUPPORTED_DTYPES:
            raise WireError(f"tensor {self.name!r}: unsupported dtype {self.dtype}")
        if any(d < 0 for d in self.shape):
            raise WireError(f"tensor {self.name!r}: negative dimension in shape {self.shape}")

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes on the wire."""
        return self.size * self.dtype.itemsize


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """The layout of a parameter list, in order."""

    tensors: tuple[TensorSpec, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise WireError(f"duplicate tensor names in spec: {names}")

    @property
    def nbytes(self) -> int:
        """Total payload bytes."""
        return sum(t.nbytes for t in self.tensors)

    @property
    def num_elements(self) -> int:
        """Total number of scalar entries."""
        return sum(t.size for t in self.tensors)


EMPTY_SPEC = ModelSpec(tensors=())


def spec_of(params: Params) -> ModelSpec:
    """The layout of `params`."""
    return ModelSpec(
        tensors=tuple(
            TensorSpec(name=name, dtype=_native(value.dtype), shape=tuple(int(d) for d in value.shape))
            for name, value in params.items()
        )
    )


def check_matches(spec: ModelSpec, expected: ModelSpec) -> None:
    """Raise `WireError` naming the first difference between two layouts."""
    got = {t.name: t for t in spec.tensors}
    want = {t.name: t for t in expected.tensors}
    if list(got) != list(want):
        missing = [n for n in want if n not in got]
        extra = [n for n in got if n not in want]
        raise WireError(f"tensor names differ: missing {missing}, unexpected {extra}")
    for name, w in want.items():
        g = got[name]
        if g.dtype != w.dtype:
            raise WireError(f"tensor {name!r} has dtype {g.dtype}, expected {w.dtype}")
        if g.shape != w.shape:
            raise WireError(f"tensor {name!r} has shape {g.shape}, expected {w.shape}")


def _native(dtype: np.dtype[np.generic]) -> np.dtype[np.generic]:
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype
