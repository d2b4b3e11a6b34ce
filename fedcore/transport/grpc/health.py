"""A client of the standard gRPC health-checking service (for `fedcore health`, probes)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check_health(
    address: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    service: str = "",
    timeout_s: float = 5.0,
) -> str:
    """The serving status of `service` at `address` ("SERVING", "NOT_SERVING", ...).

    Raises:
        grpc.RpcError: the server cannot be reached or refused the call.
    """
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
