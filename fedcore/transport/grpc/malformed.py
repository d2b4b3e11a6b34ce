"""Requests that do not decode, and logging refusals without letting clients flood the log.

gRPC calls a method's request deserializer before the method runs; one that raises makes
grpc log a traceback and answer UNKNOWN. `tolerant` wraps a deserializer so that bytes which
do not decode become a `Malformed` value instead, which the service refuses with
INVALID_ARGUMENT. `RateLimitedLog` writes at most one line per kind of refusal per interval,
counting the ones it held back, so a client sending garbage in a loop costs one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Malformed:
    """What arrived instead of a request that did not decode."""

    error: str
    size: int


def tolerant(
    parse: Callable[[bytes], T], max_bytes: int | None = None
) -> Callable[[bytes], T | Malformed]:
    """`parse`, returning `Malformed` where it raises (protobuf's `DecodeError`, or anything
    else a parser of untrusted bytes may raise), or unparsed for more than `max_bytes`."""

    def deserialize(raw: bytes) -> T | Malformed:
        if max_bytes is not None and len(raw) > max_bytes:
            return Malformed(error=f"{len(raw)} bytes, more than this message may have "
                             f"({max_bytes})", size=len(raw))
        try:
            return parse(raw)
        except Exception as err:  # noqa: BLE001 - whatever fails to parse is malformed
            return Malformed(error=f"{type(err).__name__}: {err}"[:200], size=len(raw))

    return deserialize


class RateLimitedLog:
    """At most one log line per `kind` every `interval_s` (by `clock`), with a count of the
    lines held back since the last one."""

    def __init__(self, logger: logging.Logger, clock: Callable[[], float],
                 interval_s: float = 10.0) -> None:
        self._log = logger
        self._clock = clock
        self._interval_s = interval_s
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def report(self, kind: str, message: str, *args: object) -> bool:
        """Log `message % args` under `kind` unless one was logged within the interval;
        returns whether it was logged."""
        now = self._clock()
        if now < self._next.get(kind, float("-inf")):
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        self._next[kind] = now + self._interval_s
        suffix = f" ({held} more like it in the last {self._interval_s:g}s not logged)" if held else ""
        self._log.warning("%s: " + message + "%s", kind, *args, suffix)
        return True
