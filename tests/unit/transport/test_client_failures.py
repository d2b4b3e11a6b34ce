"""What a gRPC status means to a client, and the typed errors `GrpcConnection` raises."""

from __future__ import annotations

import socket

import grpc
import pytest

from fedcore.client.connection_errors import (
    ClientRejected,
    Disconnected,
    SessionLost,
    TaskRefused,
    TransportError,
    Unreachable,
)
from fedcore.transport.grpc.client_connection import GrpcConnection
from fedcore.transport.grpc.status import client_failure

S = grpc.StatusCode


@pytest.mark.parametrize(("code", "joined", "kind"), [
    (S.PERMISSION_DENIED, True, ClientRejected),
    (S.UNAUTHENTICATED, False, ClientRejected),
    (S.UNAUTHENTICATED, True, SessionLost),
    (S.NOT_FOUND, True, SessionLost),
    (S.UNAVAILABLE, True, Disconnected),
    (S.DEADLINE_EXCEEDED, True, Unreachable),
    (S.CANCELLED, True, Unreachable),
    (S.INTERNAL, False, Unreachable),
    (S.FAILED_PRECONDITION, True, TaskRefused),
    (S.ALREADY_EXISTS, True, TaskRefused),
    (S.INVALID_ARGUMENT, True, TaskRefused),
    (S.RESOURCE_EXHAUSTED, True, TaskRefused),
    (S.UNIMPLEMENTED, True, TransportError),
])
def test_each_status_code_means_one_thing_to_a_client(code, joined, kind) -> None:
    assert client_failure(code, joined=joined) is kind


def test_a_failed_call_raises_a_typed_error_that_is_still_an_rpc_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn = GrpcConnection(f"127.0.0.1:{port}", client_id="c0", rpc_timeout_s=5.0)
    try:
        with pytest.raises(Disconnected) as err:
            conn.join()
    finally:
        conn.close()

    assert isinstance(err.value, grpc.RpcError)
    assert err.value.code() is S.UNAVAILABLE and err.value.status == "UNAVAILABLE"
    assert err.value.details() == err.value.reason
