"""What a failed call to the coordinator means for a client, whatever the transport.

A driver (e.g. `fedcore.transport.grpc.client_connection`) turns its transport's failures into
these; the client loop (`fedcore.client.loop`) decides what to do from the type alone and never
sees a transport status code.
"""

from __future__ import annotations

from fedcore.errors import FedcoreError


class StopRequested(FedcoreError):
    """A call was abandoned because the caller asked to stop (not a transport failure)."""


class TransportError(FedcoreError):
    """A call failed; the client logs it, backs off and tries again.

    Args:
        status: the transport's name for the failure (e.g. a gRPC status code's name).
        reason: what the coordinator or the transport said.
    """

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class TaskRefused(TransportError):
    """The coordinator refused one task's download or result (late, duplicate, invalid, too
    large); the client goes on with the next task."""


class ClientRejected(TransportError):
    """The coordinator refused this client for good (e.g. a wrong token): retrying cannot help."""


class SessionLost(TransportError):
    """The coordinator no longer knows this client's session (e.g. it restarted): join again."""


class Unreachable(TransportError):
    """The network or the coordinator is down for now: back off and retry."""


class Disconnected(Unreachable):
    """The coordinator could not be reached at all: back off, then join again."""
