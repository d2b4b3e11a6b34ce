"""How refusals map to gRPC status codes, in both directions."""

from __future__ import annotations

import grpc

from fedcore.client.connection_errors import (
    ClientRejected,
    Disconnected,
    SessionLost,
    TaskRefused,
    TransportError,
    Unreachable,
)
from fedcore.engine.errors import Reason

CODES: dict[Reason, grpc.StatusCode] = {
    Reason.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.UNKNOWN_CLIENT: grpc.StatusCode.NOT_FOUND,
    Reason.NOT_ASSIGNED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.LATE: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.DUPLICATE: grpc.StatusCode.ALREADY_EXISTS,
    Reason.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.UNSUPPORTED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.NOT_ALLOWED: grpc.StatusCode.PERMISSION_DENIED,
}

# Codes after which a client should join again (its session is gone, e.g. a coordinator restart).
REJOIN = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND})
# Codes that mean "the network or the coordinator is down for now": back off and retry.
TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
     grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
)
# Codes with which the coordinator refuses one task's download or result (late, duplicate,
# invalid, too large); the client goes on with the next task.
TASK_REFUSALS = frozenset(
    {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS,
     grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


def client_failure(code: grpc.StatusCode, *, joined: bool) -> type[TransportError]:
    """What a status code means to a client that holds a session (`joined`) or not."""
    if code is grpc.StatusCode.PERMISSION_DENIED or (
        code is grpc.StatusCode.UNAUTHENTICATED and not joined
    ):  # refused at Join itself (e.g. a wrong token)
        return ClientRejected
    if code in REJOIN:
        return SessionLost
    if code is grpc.StatusCode.UNAVAILABLE:
        return Disconnected
    if code in TRANSIENT:
        return Unreachable
    if code in TASK_REFUSALS:
        return TaskRefused
    return TransportError
