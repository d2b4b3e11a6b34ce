"""TLS, mutual TLS and token authentication over real gRPC on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.transport.certs import generate_pki
from fedcore.transport.grpc.client_connection import GrpcConnection
from fedcore.transport.grpc.tls import TLSConfigError, channel_credentials, server_credentials

from .conftest import summary_of

pytestmark = pytest.mark.timeout(120)

CONFIG = EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None)
MODEL = {"w": np.zeros(4, np.float32)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    generate_pki(out, clients=1, token=True)
    return out


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA, with a client certificate and a server certificate of its own."""
    out = tmp_path_factory.mktemp("rogue")
    generate_pki(out, clients=1)
    return out


def mtls(pki: Path) -> grpc.ServerCredentials:
    return server_credentials(pki / "server.pem", pki / "server-key.pem", pki / "ca.pem")


def try_join(port: int, credentials: grpc.ChannelCredentials | None, token: str = "") -> None:
    conn = GrpcConnection(f"localhost:{port}", client_id="probe", credentials=credentials,
                          auth_token=token, rpc_timeout_s=10.0)
    try:
        conn.join()
    finally:
        conn.close()


def test_client_with_the_right_certificate_completes_a_round(
    pki: Path, start_coordinator, spawn_client
) -> None:
    server = start_coordinator(CONFIG, MODEL, credentials=mtls(pki))

    proc = spawn_client(
        f"localhost:{server.port}", "c1", "--tls-ca", str(pki / "ca.pem"),
        "--tls-cert", str(pki / "client-1.pem"), "--tls-key", str(pki / "client-1-key.pem"),
    )

    assert server.wait(60)
    assert [r.status for r in server.engine.records] == ["ok"]
    assert summary_of(proc)["finished"]


def test_mtls_refuses_a_client_without_a_certificate(pki: Path, start_coordinator) -> None:
    server = start_coordinator(CONFIG, MODEL, credentials=mtls(pki))

    with pytest.raises(grpc.RpcError) as err:
        try_join(server.port, channel_credentials(pki / "ca.pem"))

    assert err.value.code() is grpc.StatusCode.UNAVAILABLE  # the handshake fails
    assert server.engine.available_clients(0.0) == []


def test_mtls_refuses_a_certificate_from_another_ca(pki: Path, rogue: Path, start_coordinator) -> None:
    server = start_coordinator(CONFIG, MODEL, credentials=mtls(pki))
    credentials = channel_credentials(
        pki / "ca.pem", rogue / "client-1.pem", rogue / "client-1-key.pem"
    )

    with pytest.raises(grpc.RpcError) as err:
        try_join(server.port, credentials)

    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert server.engine.available_clients(0.0) == []


def test_client_refuses_a_server_it_does_not_trust(pki: Path, rogue: Path, start_coordinator) -> None:
    server = start_coordinator(
        CONFIG, MODEL, credentials=server_credentials(rogue / "server.pem", rogue / "server-key.pem")
    )

    with pytest.raises(grpc.RpcError) as err:
        try_join(server.port, channel_credentials(pki / "ca.pem"))

    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_cannot_talk_to_a_tls_server(pki: Path, start_coordinator) -> None:
    server = start_coordinator(CONFIG, MODEL, credentials=mtls(pki))

    with pytest.raises(grpc.RpcError):
        try_join(server.port, None)


def test_wrong_token_is_refused_and_logged_without_the_secret(
    pki: Path, start_coordinator, caplog: pytest.LogCaptureFixture
) -> None:
    token = (pki / "token").read_text().strip()
    server = start_coordinator(
        CONFIG, MODEL, auth_token=token,
        credentials=server_credentials(pki / "server.pem", pki / "server-key.pem"),
    )
    credentials = channel_credentials(pki / "ca.pem")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(grpc.RpcError) as err:
        try_join(server.port, credentials, token="guess-" + token[:8])
    try_join(server.port, credentials, token=token)

    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "bad auth token" in caplog.text
    assert token not in caplog.text and token[:8] not in caplog.text
    assert server.engine.available_clients(0.0) == ["probe"]


def test_missing_pem_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match="nope-key.pem"):
        server_credentials(tmp_path / "nope.pem", tmp_path / "nope-key.pem")
