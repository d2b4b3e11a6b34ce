"""Client ids bound to client certificates over real mutual TLS on loopback: a client can join
only under the id its certificate names, so it cannot take over (and cut) another's session."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.transport.certs import client_identity, generate_pki
from fedcore.transport.grpc.client_connection import GrpcConnection
from fedcore.transport.grpc.tls import channel_credentials, server_credentials

pytestmark = pytest.mark.timeout(60)

CONFIG = EngineConfig(num_rounds=1, train=SelectionConfig(count=2, min_available=2),
                      evaluate=None)
MODEL = {"w": np.zeros(4, np.float32)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    generate_pki(out, names=("alice", "bob"))
    return out


def connect(pki: Path, port: int, cert: str, client_id: str) -> GrpcConnection:
    credentials = channel_credentials(pki / "ca.pem", pki / f"{cert}.pem", pki / f"{cert}-key.pem")
    return GrpcConnection(f"localhost:{port}", client_id=client_id, credentials=credentials,
                          rpc_timeout_s=10.0)


def start(start_coordinator, pki: Path, *, bind: bool):  # type: ignore[no-untyped-def]
    credentials = server_credentials(pki / "server.pem", pki / "server-key.pem", pki / "ca.pem")
    return start_coordinator(CONFIG, MODEL, credentials=credentials, bind_client_ids=bind)


def test_a_client_with_another_clients_certificate_cannot_join_under_its_id(
    pki: Path, start_coordinator
) -> None:
    # arrange: alice is in
    server = start(start_coordinator, pki, bind=True)
    alice = connect(pki, server.port, "alice", "alice")
    mallory = connect(pki, server.port, "bob", "alice")  # bob's certificate, alice's id
    try:
        alice.join()
        session = alice.session

        # act
        with pytest.raises(grpc.RpcError) as err:
            mallory.join()

        # assert: refused for good, and alice's session still works
        assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "(bob)" in err.value.details()  # what the certificate names
        assert alice.session == session
        alice.get_task(timeout_s=10.0)  # raises if the session was cut
        assert server.engine.available_clients(0.0) == ["alice"]
    finally:
        alice.close()
        mallory.close()


def test_each_client_joins_under_the_id_its_certificate_names(
    pki: Path, start_coordinator
) -> None:
    server = start(start_coordinator, pki, bind=True)
    conns = [connect(pki, server.port, name,
                     client_identity((pki / f"{name}.pem").read_bytes()))
             for name in ("alice", "bob")]
    try:
        for conn in conns:
            conn.join()
    finally:
        for conn in conns:
            conn.close()

    assert sorted(server.engine.available_clients(0.0)) == ["alice", "bob"]


def test_without_binding_any_certificate_may_use_any_id(pki: Path, start_coordinator) -> None:
    server = start(start_coordinator, pki, bind=False)
    conn = connect(pki, server.port, "bob", "alice")
    try:
        conn.join()
    finally:
        conn.close()

    assert server.engine.available_clients(0.0) == ["alice"]
