"""A coordinator and clients that say what they are doing, over real gRPC on loopback: the
likely cause of a failed connection (TLS on one side only), `fedcore health`'s reason, the
coordinator's status lines, `last_seen` following activity, and a client that refused every
task exiting with the refusal status."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedcore.cli import ExitCode, main
from fedcore.client.connection_errors import Disconnected
from fedcore.config import load_config
from fedcore.coordinator.process import run_coordinator
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.messages import LocalDPConfig
from fedcore.storage.run_store import RunStore
from fedcore.strategy import FedAvg
from fedcore.transport.certs import generate_pki
from fedcore.transport.grpc.client_connection import DIAGNOSE_AFTER, GrpcConnection
from fedcore.transport.grpc.observer import Observers
from fedcore.transport.grpc.server import CoordinatorServer
from fedcore.transport.grpc.tls import channel_credentials, server_credentials

from .conftest import wait_until

pytestmark = pytest.mark.timeout(120)

CONFIG = EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None)
MODEL = {"w": np.zeros(4, np.float32)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    generate_pki(out, clients=0)
    return out


def failed_joins(address: str, **kwargs: object) -> Disconnected:
    """Join `DIAGNOSE_AFTER` times, each failing; the last failure."""
    conn = GrpcConnection(address, client_id="probe", rpc_timeout_s=5.0, **kwargs)  # type: ignore[arg-type]
    try:
        for _ in range(DIAGNOSE_AFTER):
            with pytest.raises(Disconnected) as failure:
                conn.join()
        return failure.value
    finally:
        conn.close()


def test_a_plaintext_client_of_a_tls_coordinator_is_told_why(
    pki: Path, start_coordinator: Callable[..., CoordinatorServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_coordinator(CONFIG, MODEL, credentials=server_credentials(
        pki / "server.pem", pki / "server-key.pem"))
    caplog.set_level(logging.INFO, logger="fedcore.transport.grpc.client_connection")

    err = failed_joins(f"localhost:{server.port}")

    assert "speaks TLS but this client connects in plaintext" in err.reason
    assert "--tls-ca" in err.reason
    said = [r.getMessage() for r in caplog.records]
    assert f"probe: connecting to localhost:{server.port} (plaintext)" in said
    assert any("cannot reach the coordinator (3 attempts)" in line for line in said)


def test_a_tls_client_of_a_plaintext_coordinator_is_told_why(
    pki: Path, start_coordinator: Callable[..., CoordinatorServer]
) -> None:
    server = start_coordinator(CONFIG, MODEL)

    err = failed_joins(f"localhost:{server.port}",
                       credentials=channel_credentials(pki / "ca.pem"))

    assert "speaks plaintext but this client uses TLS" in err.reason


def test_health_says_why_it_cannot_reach_the_coordinator(
    pki: Path, start_coordinator: Callable[..., CoordinatorServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_coordinator(CONFIG, MODEL, credentials=server_credentials(
        pki / "server.pem", pki / "server-key.pem"))

    code = main(["health", "--server", f"localhost:{server.port}", "--timeout", "3"])

    # (the in-process server's gRPC core may log the failed handshake to stderr as well)
    (line,) = (line for line in capsys.readouterr().err.splitlines()
               if line.startswith(f"localhost:{server.port}"))
    assert code == ExitCode.FAILED
    assert "unreachable" in line and "speaks TLS" in line


def test_last_seen_follows_a_clients_polls(
    tmp_path: Path, start_coordinator: Callable[..., CoordinatorServer]
) -> None:
    ticks = itertools.count(1000)
    store = RunStore(tmp_path / "runs.sqlite", wall_clock=lambda: float(next(ticks)),
                     activity_every_s=0.0)
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1, min_available=2),
                          evaluate=None)
    server = start_coordinator(config, MODEL, observer=Observers(store))
    conn = GrpcConnection(f"127.0.0.1:{server.port}", client_id="a", rpc_timeout_s=5.0)
    try:
        conn.join()
        joined = store.clients()[0]["last_seen"]
        conn.get_task(timeout_s=5.0)  # waits: one client of the two needed

        (row,) = store.clients()
    finally:
        conn.close()
        store.close()
    assert row["last_seen"] > joined == row["first_seen"]


def test_the_coordinator_says_whom_it_waits_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    np.savez(tmp_path / "init.npz", **MODEL)
    plan = load_config(None, {
        "server.address": "127.0.0.1:0", "server.out_dir": str(tmp_path / "out"),
        "server.initial_model": str(tmp_path / "init.npz"), "rounds.min_available": 2,
        "rounds.min_results": 1,
    })
    stop = threading.Event()
    caplog.set_level(logging.INFO, logger="fedcore.coordinator.progress_log")

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records]

    runner = threading.Thread(target=run_coordinator, args=(plan,), kwargs={"stop": stop})
    runner.start()
    try:
        wait_until(lambda: any(line.startswith("waiting for clients") for line in said()), 30)
    finally:
        stop.set()
        runner.join(30)
    assert "waiting for clients: 0 of 2 joined (rounds start at 2: --min-clients, [rounds] " \
           "min_available)" in said()


def test_a_client_that_refuses_every_task_exits_with_the_refusal_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedcore.demo.digits_app import initial_params

    weak = FedAvg(local_dp=LocalDPConfig(noise_multiplier=0.1, max_grad_norm=1.0))
    engine = RoundEngine(CONFIG, weak, initial_params=initial_params(0))
    server = CoordinatorServer(engine, long_poll_s=1.0, linger_s=2.0)
    server.start()
    try:
        code = main(["client", "--server", f"127.0.0.1:{server.port}", "--partition", "0",
                     "--num-partitions", "2", "--state-dir", str(tmp_path / "state")])
    finally:
        server.stop()

    err = capsys.readouterr().err
    assert code == ExitCode.REFUSED == 3
    assert "fedcore client: refused: every task it was given (1) was refused" in err
    assert "noise multiplier" in err


def test_a_client_with_the_wrong_token_is_refused_and_told_which_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fedcore.demo.digits_app import initial_params

    engine = RoundEngine(CONFIG, FedAvg(), initial_params=initial_params(0))
    server = CoordinatorServer(engine, auth_token="the-right-one", long_poll_s=1.0)
    server.start()
    (tmp_path / "token").write_text("a-wrong-one\n")
    try:
        code = main(["client", "--server", f"127.0.0.1:{server.port}", "--partition", "0",
                     "--num-partitions", "2", "--auth-token-file", str(tmp_path / "token")])
    finally:
        server.stop()

    (line,) = (line for line in capsys.readouterr().err.splitlines()
               if line.startswith("fedcore client: error:"))
    assert code == ExitCode.REFUSED
    assert "wrong or missing auth token" in line and "--auth-token-file" in line
