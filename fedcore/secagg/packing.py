"""Masked vectors on the wire: b bits per coordinate, little-endian, no padding but the last byte.

Coordinates are packed least significant bit first into a little-endian bit stream, so for
b = 8, 16, 32 or 64 the bytes are exactly the little-endian unsigned integers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fedcore.secagg.errors import SecAggError

Words = npt.NDArray[np.unsignedinteger]
_ALIGNED: dict[int, np.dtype[np.unsignedinteger]] = {
    8: np.dtype("<u1"),
    16: np.dtype("<u2"),
    32: np.dtype("<u4"),
    64: np.dtype("<u8"),
}
_CHUNK = 1 << 16  # coordinates per chunk in the bit-level path


def word_dtype(bit_width: int) -> np.dtype[np.unsignedinteger]:
    """The machine word that holds values mod 2**bit_width: uint32 up to 32 bits, else uint64."""
    return np.dtype(np.uint32) if bit_width <= 32 else np.dtype(np.uint64)


def packed_size(dim: int, bit_width: int) -> int:
    """Bytes that `dim` coordinates of `bit_width` bits take."""
    return (dim * bit_width + 7) // 8


def pack(words: Words, bit_width: int) -> bytes:
    """Pack the low `bit_width` bits of each word."""
    if bit_width in _ALIGNED:
        aligned: bytes = words.astype(_ALIGNED[bit_width], copy=False).tobytes()
        return aligned
    words64 = words.astype(np.uint64, copy=False)
    shifts = np.arange(bit_width, dtype=np.uint64)
    bits = np.empty(words.size * bit_width, dtype=np.uint8)
    for start in range(0, words.size, _CHUNK):
        chunk = words64[start : start + _CHUNK]
        plane = ((chunk[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        bits[start * bit_width : (start + chunk.size) * bit_width] = plane.ravel()
    return np.packbits(bits, bitorder="little").tobytes()


def unpack(data: bytes | memoryview, bit_width: int, dim: int) -> Words:
    """Inverse of `pack`, into the word dtype of `bit_width`.

    Raises:
        SecAggError: when the length is wrong or the padding bits are not zero.
    """
    if len(data) != packed_size(dim, bit_width):
        raise SecAggError(
            f"masked vector has {len(data)} bytes, expected {packed_size(dim, bit_width)}"
        )
    dtype = word_dtype(bit_width)
    if bit_width in _ALIGNED:
        words: Words = np.frombuffer(data, dtype=_ALIGNED[bit_width]).astype(dtype, copy=False)
        return words
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if bits[dim * bit_width :].any():
        raise SecAggError("masked vector has non-zero padding bits")
    out = np.zeros(dim, dtype=np.uint64)
    for bit in range(bit_width):
        plane = bits[bit : dim * bit_width : bit_width].astype(np.uint64)
        out |= plane << np.uint64(bit)
    return out.astype(dtype)
