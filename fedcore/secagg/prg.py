"""The mask PRG: AES-128-CTR keystream from a 32-byte seed, as machine words.

Guarantee: the first 16 bytes of the seed are the AES key and the last 16 the initial
counter block, so a seed drawn uniformly (or from HKDF) gives a keystream that no
efficient observer tells from uniform words; every coordinate mod 2**b is uniform.
The words are read little-endian, whatever the host's byte order.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 32
Words = npt.NDArray[np.unsignedinteger]


def _keystream_into(seed: bytes, source: bytes, out: Words) -> None:
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a mask seed has {SEED_BYTES} bytes, got {len(seed)}")
    encryptor = Cipher(algorithms.AES(seed[:16]), modes.CTR(seed[16:])).encryptor()
    encryptor.update_into(source, memoryview(out).cast("B"))  # type: ignore[arg-type]
    if out.dtype.byteorder == ">":  # pragma: no cover - big-endian hosts only
        out.byteswap(inplace=True)


def expand_into(seed: bytes, out: Words) -> None:
    """Overwrite `out` (C-contiguous uint32 or uint64) with mask words from `seed`."""
    _keystream_into(seed, bytes(out.nbytes), out)


def expand(seed: bytes, dim: int, dtype: npt.DTypeLike = np.uint32) -> Words:
    """A fresh array of `dim` mask words expanded from `seed`."""
    out = np.empty(dim, dtype=np.dtype(dtype).newbyteorder("<"))
    _keystream_into(seed, bytes(out.nbytes), out)
    return out


class MaskExpander:
    """Adds PRG masks to an accumulator through one preallocated scratch buffer.

    Args:
        dim: the vector length.
        dtype: uint32 or uint64; arithmetic wraps modulo 2**32 or 2**64.
    """

    def __init__(self, dim: int, dtype: npt.DTypeLike) -> None:
        self._scratch: Words = np.empty(dim, dtype=np.dtype(dtype).newbyteorder("<"))
        self._zeros = bytes(self._scratch.nbytes)

    def add(self, acc: Words, seed: bytes) -> None:
        """acc += PRG(seed), wrapping."""
        _keystream_into(seed, self._zeros, self._scratch)
        np.add(acc, self._scratch, out=acc)

    def subtract(self, acc: Words, seed: bytes) -> None:
        """acc -= PRG(seed), wrapping."""
        _keystream_into(seed, self._zeros, self._scratch)
        np.subtract(acc, self._scratch, out=acc)
