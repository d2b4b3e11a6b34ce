"""A compressed update as ordinary named tensors, and its decoding against the model's layout.

For a float tensor `w` of the model, the payload carries one of:
- `w` itself (dense, as uncompressed);
- `w#q<b>` (uint8, the packed b-bit codes) and `w#range` (float64 [lo, step]): quantised;
- `w#idx` (int64, ascending unique flat indices) and `w#val` (w's dtype): top-k entries.
Non-float tensors always travel dense, and so does every tensor of a model that has a name
containing `#`. The coordinator
checks the layout when the result is announced (`check_layout`) and the content when it arrives
(`decode_update`: code sizes, index bounds and order, finite ranges), before aggregating.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import secrets
import struct
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fedcore.compression.quantize import BITS, Quantized, dequantize, packed_bytes, quantize
from fedcore.compression.topk import F64, sparsify_with_feedback
from fedcore.protocol.errors import WireError
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec, TensorSpec, spec_of
from fedcore.wire.tensor import decode, encode

log = logging.getLogger(__name__)

SEP = "#"
UPLOAD_BYTES = "upload_bytes"  # a round's measurement: bytes of the plain results it accepted
RESIDUAL_NAME = "topk_residual"
_LEN = struct.Struct("<Q")
_U8, _F64, _I64 = np.dtype(np.uint8), np.dtype(np.float64), np.dtype(np.int64)


class Kind(enum.Enum):
    """How uploads are compressed."""

    QUANTIZE = "quantize"
    TOPK = "topk"


@dataclass(frozen=True, slots=True, kw_only=True)
class Compression:
    """A compression setting: `bits` for QUANTIZE (1, 4, 8), `fraction` kept for TOPK."""

    kind: Kind
    bits: int = 8
    fraction: float = 0.01

    def __post_init__(self) -> None:
        if self.kind is Kind.QUANTIZE and self.bits not in BITS:
            raise ValueError(f"bits must be one of {BITS}, got {self.bits}")
        if self.kind is Kind.TOPK and not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")


class BlobStore(Protocol):
    """Where the error-feedback residual lives: a client's `StateDir` or a simulator's memory."""

    def read_bytes(self, name: str) -> bytes | None:
        """The blob `name`, or None."""
        ...

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace the blob `name`."""
        ...


class MemoryStore:
    """A `BlobStore` in memory (one per simulated client)."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def read_bytes(self, name: str) -> bytes | None:
        """The blob `name`, or None."""
        return self._blobs.get(name)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Replace the blob `name`."""
        self._blobs[name] = bytes(data)


def compressible(name: str, dtype: np.dtype[np.generic]) -> bool:
    """Whether a model tensor may travel compressed."""
    return SEP not in name and np.issubdtype(dtype, np.floating)


class Compressor:
    """Compresses a client's updates; for TOPK keeps the residual in `store` between rounds.

    Args:
        compression: the setting.
        store: where the top-k residual persists (required for TOPK: error feedback without
            memory across rounds would silently drop mass).
        rng: stochastic rounding's randomness (default seeded from `secrets`).
    """

    def __init__(self, compression: Compression, *, store: BlobStore | None = None,
                 rng: np.random.Generator | None = None) -> None:
        if compression.kind is Kind.TOPK and store is None:
            raise ValueError("top-k compression keeps its residual in a store: pass the "
                             "client's state directory (or a MemoryStore in simulation)")
        self.compression = compression
        self._store = store
        self._rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))

    def compress(self, update: dict[str, Array]) -> dict[str, Array]:
        """The payload that carries `update` compressed (see the module docstring)."""
        c = self.compression
        out: dict[str, Array] = {}
        if any(SEP in name for name in update):  # the reserved separator: no unambiguous form
            return dict(update)
        if c.kind is Kind.QUANTIZE:
            for name, value in update.items():
                if not compressible(name, value.dtype):
                    out[name] = value
                    continue
                qt = quantize(value, c.bits, self._rng)
                out[f"{name}{SEP}q{c.bits}"] = qt.codes
                out[f"{name}{SEP}range"] = np.array([qt.lo, qt.step], np.float64)
            return out
        residuals = self._load_residuals(update)
        kept: dict[str, F64] = {}
        for name, value in update.items():
            if not compressible(name, value.dtype):
                out[name] = value
                continue
            idx, values, rest = sparsify_with_feedback(
                np.asarray(value, np.float64), residuals.get(name), c.fraction)
            sent = values.astype(value.dtype)
            rest[idx] += values - sent.astype(np.float64)  # rounding to the wire dtype fed back
            out[f"{name}{SEP}idx"] = idx
            out[f"{name}{SEP}val"] = sent
            kept[name] = rest
        self._save_residuals(kept)
        return out

    def _load_residuals(self, update: dict[str, Array]) -> dict[str, F64]:
        assert self._store is not None
        blob = self._store.read_bytes(RESIDUAL_NAME)
        if blob is None:
            return {}
        try:
            (n,) = _LEN.unpack_from(blob, 0)
            spec = ModelSpec(tensors=tuple(
                TensorSpec(name=str(t["name"]), dtype=_F64, shape=(int(t["size"]),))
                for t in json.loads(blob[_LEN.size:_LEN.size + n])))
            residuals = decode(spec, memoryview(blob)[_LEN.size + n:])
        except (ValueError, KeyError, TypeError, WireError, struct.error) as err:
            log.warning("top-k residual unreadable (%s); starting without it", err)
            return {}
        sizes = {k: int(np.size(v)) for k, v in update.items() if compressible(k, v.dtype)}
        if {k: int(v.size) for k, v in residuals.items()} != sizes:
            log.warning("top-k residual is for another model layout; starting without it")
            return {}
        return {k: np.array(v, np.float64) for k, v in residuals.items()}

    def _save_residuals(self, residuals: dict[str, F64]) -> None:
        assert self._store is not None
        head = json.dumps([{"name": k, "size": int(v.size)} for k, v in residuals.items()])
        data = head.encode()
        payload = encode(dict(residuals))
        self._store.write_bytes(RESIDUAL_NAME, _LEN.pack(len(data)) + data + payload)


def is_compressed(spec: ModelSpec) -> bool:
    """Whether a result's layout carries compressed tensors."""
    return any(SEP in t.name for t in spec.tensors)


def check_layout(announced: ModelSpec, model: ModelSpec) -> None:
    """Raise `WireError` unless `announced` carries each model tensor exactly once, dense or
    in one of the compressed forms, and nothing else."""
    if any(SEP in t.name for t in model.tensors):
        raise WireError(f"the model has tensor names with {SEP!r}: its updates travel dense")
    got = {t.name: t for t in announced.tensors}
    used: set[str] = set()
    for t in model.tensors:
        forms = _forms(t, got)
        if len(forms) != 1:
            raise WireError(f"tensor {t.name!r} must travel exactly once (dense, quantised or "
                            f"top-k), got {len(forms)} forms")
        used.update(forms[0])
    extra = sorted(set(got) - used)
    if extra:
        raise WireError(f"unexpected tensors in a compressed update: {extra[:5]}")


def _forms(t: TensorSpec, got: dict[str, TensorSpec]) -> list[tuple[str, ...]]:
    forms: list[tuple[str, ...]] = []
    dense = got.get(t.name)
    if dense is not None:
        if (dense.dtype, dense.shape) != (t.dtype, t.shape):
            raise WireError(f"tensor {t.name!r} has {dense.dtype}{list(dense.shape)}, expected "
                            f"{t.dtype}{list(t.shape)}")
        forms.append((t.name,))
    if not compressible(t.name, t.dtype):
        return forms
    for bits in BITS:
        codes = got.get(f"{t.name}{SEP}q{bits}")
        if codes is None:
            continue
        rng = got.get(f"{t.name}{SEP}range")
        if (codes.dtype, codes.shape) != (_U8, (packed_bytes(t.size, bits),)) or rng is None \
                or (rng.dtype, rng.shape) != (_F64, (2,)):
            raise WireError(f"quantised {t.name!r} needs uint8[{packed_bytes(t.size, bits)}] "
                            f"codes and float64[2] range")
        forms.append((codes.name, rng.name))
    idx, val = got.get(f"{t.name}{SEP}idx"), got.get(f"{t.name}{SEP}val")
    if idx is not None or val is not None:
        if idx is None or val is None or idx.dtype != _I64 or val.dtype != t.dtype \
                or len(idx.shape) != 1 or idx.shape != val.shape or idx.shape[0] > t.size:
            raise WireError(f"top-k {t.name!r} needs int64[k] indices and {t.dtype}[k] values, "
                            f"k <= {t.size}")
        forms.append((idx.name, val.name))
    if f"{t.name}{SEP}range" in got and not any(SEP + "q" in n for f in forms for n in f):
        raise WireError(f"{t.name}{SEP}range without codes")
    return forms


def decode_update(tensors: dict[str, Array], model: ModelSpec) -> dict[str, Array]:
    """The dense update (the model's dtypes and shapes) that `tensors` carries.

    Raises:
        WireError: the layout or the content is invalid (nothing is returned).
    """
    check_layout(spec_of(tensors), model)
    out: dict[str, Array] = {}
    for t in model.tensors:
        if t.name in tensors:
            out[t.name] = tensors[t.name]
            continue
        quantised = [b for b in BITS if f"{t.name}{SEP}q{b}" in tensors]
        if quantised:
            bits = quantised[0]
            lo, step = (float(v) for v in tensors[f"{t.name}{SEP}range"])
            if not (math.isfinite(lo) and math.isfinite(step) and step >= 0):
                raise WireError(f"quantised {t.name!r} has a bad range [{lo}, {step}]")
            qt = Quantized(np.asarray(tensors[f"{t.name}{SEP}q{bits}"], np.uint8), lo, step,
                           t.size, bits)
            with np.errstate(over="ignore"):
                dense = dequantize(qt).astype(t.dtype).reshape(t.shape)
        else:
            idx = np.asarray(tensors[f"{t.name}{SEP}idx"])
            if idx.size and (idx[0] < 0 or idx[-1] >= t.size or np.any(np.diff(idx) <= 0)):
                raise WireError(f"top-k {t.name!r}: indices must ascend strictly within "
                                f"[0, {t.size})")
            dense = np.zeros(t.size, t.dtype)
            dense[idx] = tensors[f"{t.name}{SEP}val"]
            dense = dense.reshape(t.shape)
        if not np.all(np.isfinite(dense)):
            raise WireError(f"compressed {t.name!r} decodes to non-finite values")
        out[t.name] = dense
    return out
