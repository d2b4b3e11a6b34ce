"""How refusals map to gRPC status codes, in both directions."""

from __future__ import annotations

import grpc

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
