"""Tensors as raw little-endian bytes: chunked encoding and bounded decoding of a layout.

A parameter list travels as its `ModelSpec` (`fedcore.protocol.specs`) (names, dtypes, shapes) followed by the tensors'
bytes concatenated in spec order, C order, little-endian, without padding. The size follows
from the spec alone, so a receiver preallocates one buffer and rejects anything that does not
fit it. Nothing here pickles.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from fedcore.protocol.errors import PayloadTooLarge, WireError
from fedcore.protocol.params import Array, Params
from fedcore.protocol.specs import ModelSpec

DEFAULT_CHUNK_BYTES = 1 << 20
"""1 MiB: well below gRPC's 4 MiB default message limit, large enough to amortise overhead."""

def tensor_bytes(value: Array) -> memoryview:
    """A zero-copy (where possible) little-endian, C-ordered byte view of one tensor."""
    little = value.astype(value.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little).reshape(-1).view(np.uint8).data


def iter_chunks(
    params: Params, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[int, bytes]]:
    """Yield `(offset, data)` slices of the concatenated payload, each at most `chunk_bytes`.

    Small tensors are coalesced into one chunk; large ones are cut. Empty params yield nothing.
    """
    for offset, pieces in iter_chunk_views(params, chunk_bytes):
        yield offset, b"".join(pieces)


def iter_chunk_views(
    params: Params, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[tuple[int, list[memoryview]]]:
    """`iter_chunks` without its copy: each chunk as the byte views it is made of, in order."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    pending: list[memoryview] = []
    pending_len = 0
    offset = 0
    for value in params.values():
        view = tensor_bytes(np.asarray(value))
        start = 0
        while start < len(view):
            take = min(chunk_bytes - pending_len, len(view) - start)
            pending.append(view[start : start + take])
            pending_len += take
            start += take
            if pending_len == chunk_bytes:
                yield offset, pending
                offset += pending_len
                pending, pending_len = [], 0
    if pending_len:
        yield offset, pending


def encode(params: Params) -> bytes:
    """The whole payload in one buffer (for models known to be small)."""
    return b"".join(tensor_bytes(np.asarray(v)) for v in params.values())


class PayloadAssembler:
    """Receives chunks in order into one preallocated buffer and decodes them as tensors.

    Raises `WireError` for out-of-order chunks and `PayloadTooLarge` for bytes beyond what the
    spec announces; nothing is allocated beyond `spec.nbytes`.
    """

    def __init__(self, spec: ModelSpec, *, max_bytes: int | None = None) -> None:
        if max_bytes is not None and spec.nbytes > max_bytes:
            raise PayloadTooLarge(
                f"payload of {spec.nbytes} bytes exceeds the limit of {max_bytes} bytes"
            )
        self.spec = spec
        # Uninitialised: every byte is written by `add` before `finish` reads it, and zero-filling
        # the buffer first cost as much as copying the payload in.
        self._buffer = np.empty(spec.nbytes, dtype=np.uint8)
        self._received = 0

    @property
    def complete(self) -> bool:
        """Whether every announced byte has arrived."""
        return self._received == len(self._buffer)

    def add(self, offset: int, data: bytes | memoryview) -> None:
        """Accept the next chunk, which must start where the previous one ended."""
        if offset != self._received:
            raise WireError(f"chunk at offset {offset}, expected {self._received}")
        end = offset + len(data)
        if end > len(self._buffer):
            raise PayloadTooLarge(
                f"chunk ends at byte {end}, beyond the announced {len(self._buffer)} bytes"
            )
        self._buffer[offset:end] = np.frombuffer(data, dtype=np.uint8)
        self._received = end

    def finish(self) -> dict[str, Array]:
        """The decoded tensors (writable views of the buffer, native byte order)."""
        if not self.complete:
            raise WireError(f"payload incomplete: {self._received} of {len(self._buffer)} bytes")
        return decode(self.spec, self._buffer)


def decode(
    spec: ModelSpec, buffer: bytes | bytearray | memoryview | np.ndarray
) -> dict[str, Array]:
    """Tensors of `spec` read from `buffer`; views when the buffer is writable and native-endian."""
    if len(buffer) != spec.nbytes:
        raise WireError(f"payload has {len(buffer)} bytes, spec announces {spec.nbytes}")
    out: dict[str, Array] = {}
    offset = 0
    for t in spec.tensors:
        flat = np.frombuffer(buffer, dtype=t.dtype.newbyteorder("<"), count=t.size, offset=offset)
        out[t.name] = flat.astype(t.dtype, copy=False).reshape(t.shape)
        offset += t.nbytes
    return out


def check_finite(params: Params, names: Sequence[str] | None = None) -> None:
    """Raise `WireError` if a floating-point tensor holds NaN or infinity."""
    for name in names if names is not None else list(params):
        value = params[name]
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise WireError(f"tensor {name!r} contains NaN or infinite values")
