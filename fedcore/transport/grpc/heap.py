"""Give memory freed after a flood back to the operating system (glibc's `malloc_trim`).

Refusing a large request frees it at once, but glibc keeps freed heap memory in its arenas
for reuse: after thousands of refused multi-megabyte messages (received on gRPC's threads, in
their own arenas) the coordinator's resident size stayed hundreds of megabytes up, although
nothing held the memory. `HeapTrimmer.maybe_trim`, called from the server's tick, asks glibc
to return free pages at most once per interval (a few milliseconds per call). Elsewhere
(another C library) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Calls `malloc_trim(0)` at most every `interval_s` (by the `now` it is given)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._trim = _malloc_trim()
        self._next = float("-inf")

    @property
    def available(self) -> bool:
        """Whether this C library can trim (glibc)."""
        return self._trim is not None

    def maybe_trim(self, now: float) -> bool:
        """Trim if the interval has passed since the last trim; returns whether it did."""
        if self._trim is None or now < self._next:
            return False
        self._next = now + self._interval_s
        self._trim(0)
        return True
