"""Errors raised by the secure-aggregation machines and primitives."""

from __future__ import annotations

import enum

from fedcore.errors import FedcoreError


class SecAggError(FedcoreError):
    """Base class: something in a secure-aggregation round went wrong."""


class Refusal(enum.Enum):
    """What kind of refusal a `ProtocolError` is, for callers that act on it (never its text)."""

    INVALID = "invalid"  # malformed, out of order, or not acceptable for what it says
    NOT_IN_PHASE = "not_in_phase"  # the sender is not (or no longer) part of the current phase


class ProtocolError(SecAggError):
    """A message or action is not acceptable now; the machine's state is unchanged.

    Args:
        phase: the phase the machine was in, by name.
        got: the message type or action that was refused, by name.
        reason: why it was refused.
        kind: the kind of refusal (`Refusal.NOT_IN_PHASE`: the sender dropped or was never
            expected in this phase, so its message comes too late rather than being bad).
    """

    def __init__(
        self, *, phase: str, got: str, reason: str, kind: Refusal = Refusal.INVALID
    ) -> None:
        super().__init__(f"{got} refused in phase {phase}: {reason}")
        self.phase = phase
        self.got = got
        self.reason = reason
        self.kind = kind


class RoundAborted(SecAggError):
    """The server gave up on the round; no partial result exists."""
