"""Errors raised by the secure-aggregation machines and primitives."""

from __future__ import annotations

from fedcore.errors import FedcoreError


class SecAggError(FedcoreError):
    """Base class: something in a secure-aggregation round went wrong."""


class ProtocolError(SecAggError):
    """A message or action is not acceptable now; the machine's state is unchanged.

    Args:
        phase: the phase the machine was in, by name.
        got: the message type or action that was refused, by name.
        reason: why it was refused.
    """

    def __init__(self, *, phase: str, got: str, reason: str) -> None:
        super().__init__(f"{got} refused in phase {phase}: {reason}")
        self.phase = phase
        self.got = got
        self.reason = reason


class RoundAborted(SecAggError):
    """The server gave up on the round; no partial result exists."""
