"""Why the engine refused a request. Every refusal leaves the engine's state unchanged."""

from __future__ import annotations

import enum

from fedcore.errors import FedcoreError


class Reason(enum.Enum):
    """Categories of refusal; drivers map each to a transport status (e.g. a gRPC code)."""

    UNAUTHENTICATED = "unauthenticated"
    UNKNOWN_CLIENT = "unknown_client"
    NOT_ASSIGNED = "not_assigned"
    LATE = "late"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    TOO_LARGE = "too_large"
    UNSUPPORTED = "unsupported"
    NOT_ALLOWED = "not_allowed"


class EngineError(FedcoreError):
    """A request the engine refuses; `reason` says which kind, the message says what to do."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
