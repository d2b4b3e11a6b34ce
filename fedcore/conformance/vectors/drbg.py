"""The deterministic byte source the vectors draw their "random" inputs from.

Not a cryptographic generator for use anywhere else: it exists so that every key, seed and
coefficient in the vectors can be recomputed from a label. The stream of a label is the
concatenation of SHA-256(PREFIX || label || counter) for counter = 0, 1, 2, ..., with the
label in UTF-8 and the counter as an 8-byte big-endian integer; draws consume it in order.
Every draw is also recorded, so a reader needs only the recorded bytes, not this module.
"""

from __future__ import annotations

import hashlib
import struct

PREFIX = b"fedcore-conformance-v1/"


def stream_block(label: str, counter: int) -> bytes:
    """Block `counter` of the stream of `label`."""
    return hashlib.sha256(PREFIX + label.encode("utf-8") + struct.pack(">Q", counter)).digest()


class Stream:
    """A `fedcore.secagg.keys.KeySource` over the stream of `label`, recording every draw."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.draws: list[bytes] = []
        self._buffer = b""
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += stream_block(self.label, self._counter)
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        self.draws.append(out)
        return out


def take(label: str, n: int) -> bytes:
    """The first `n` bytes of the stream of `label`."""
    return Stream(label)(n)


class Scripted:
    """A key source that returns given bytes first, then continues from a `Stream`.

    Used to put words into a Shamir draw that rejection sampling must skip.
    """

    def __init__(self, prefix: bytes, label: str) -> None:
        self._prefix = prefix
        self._rest = Stream(label)
        self.draws: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        head, self._prefix = self._prefix[:n], self._prefix[n:]
        out = head + (self._rest(n - len(head)) if n > len(head) else b"")
        self.draws.append(out)
        return out
