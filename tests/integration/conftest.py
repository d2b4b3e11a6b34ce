"""Real gRPC on loopback: a coordinator in this process, clients as processes or threads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from fedcore.client import BackgroundClient
from fedcore.engine import EngineConfig, RoundEngine
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

CLIENT_SCRIPT = Path(__file__).with_name("numpy_client.py")


@pytest.fixture
def start_coordinator() -> Iterator[Callable[..., CoordinatorServer]]:
    servers: list[CoordinatorServer] = []

    def start(config: EngineConfig, initial: dict[str, np.ndarray] | None = None,
              **kwargs: object) -> CoordinatorServer:
        engine = RoundEngine(config, FedAvg(), initial_params=initial,
                             initial_from_client=initial is None)
        server = CoordinatorServer(engine, long_poll_s=1.0, linger_s=1.0, **kwargs)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def spawn_client() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def spawn(address: str, client_id: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(CLIENT_SCRIPT), address, client_id, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; any still running at the end are killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 180.0) -> None:
    """Poll `predicate` until it holds; fail the test if it never does (generous: starting
    processes that import torch on a loaded 2-core machine can take a minute)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def summary_of(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, object]:
    """The JSON line a test client prints when it exits."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_over_grpc(engine: RoundEngine, apps: Sequence[object],
                  timeout: float = 90) -> CoordinatorServer:
    """Run `engine` to its end on loopback with one `BackgroundClient` per app (client ids
    sim-0, sim-1, ...); returns the stopped server once every client ended without error."""
    server = CoordinatorServer(engine, long_poll_s=0.5, linger_s=0.5)
    server.start()
    clients = [BackgroundClient(app, f"127.0.0.1:{server.port}", client_id=f"sim-{i}")  # type: ignore[arg-type]
               for i, app in enumerate(apps)]
    try:
        for client in clients:
            client.start()
        assert server.wait(timeout), "the gRPC run did not finish"
    finally:
        for client in clients:
            client.stop(timeout=10)
        server.stop()
    assert all(c.error is None for c in clients)
    assert server.engine.params is not None
    return server
