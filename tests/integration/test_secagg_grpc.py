"""Secure aggregation over real gRPC: 10 client processes, two killed at different phases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

pytestmark = pytest.mark.timeout(180)
SCRIPT = Path(__file__).with_name("secagg_client.py")
N = 10


def _expected_mean(adds: dict[int, float], survivors: list[int], examples: int = 10) -> float:
    # equal example counts: every survivor has the same weight
    return float(np.mean([adds[i] for i in survivors]))


def test_ten_processes_with_two_killed_at_different_phases_give_the_exact_mean() -> None:
    # arrange
    engine = RoundEngine(
        EngineConfig(
            num_rounds=2,
            train=SelectionConfig(fraction=1.0, min_available=N, min_results=6),
            evaluate=None,
            round_timeout_s=120.0,
            secagg=SecureAggregationConfig(max_clients=N, phase_timeout_s=10.0, clip=1.0),
        ),
        FedAvg(),
        initial_params={"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)},
    )
    server = CoordinatorServer(engine, long_poll_s=1.0, linger_s=1.0)
    port = server.start()
    adds = {i: 0.01 * (i + 1) for i in range(N)}
    die = {3: 2, 7: 3}  # client 3 dies before masking, client 7 before unmasking
    procs = {
        i: subprocess.Popen(
            [sys.executable, str(SCRIPT), f"127.0.0.1:{port}", f"c{i}", "--add", str(adds[i]),
             *(["--die-at-step", str(die[i])] if i in die else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(N)
    }

    try:
        # act
        assert server.wait(150), "the run did not finish"
    finally:
        server.stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    # assert: round 1 sums the 9 clients whose masked input arrived (client 7 died after
    # sending it, so its self mask is removed with the others' shares); round 2 the 8 alive
    first, second = engine.records
    assert (first.status, first.results_received) == ("ok", 9), first.reason
    assert (second.status, second.results_received) == ("ok", 8), second.reason
    step1 = _expected_mean(adds, [i for i in range(N) if i != 3])
    step2 = _expected_mean(adds, [i for i in range(N) if i not in die])
    np.testing.assert_allclose(engine.params["w"], np.full((3, 4), step1 + step2), atol=1e-6)
    np.testing.assert_allclose(engine.params["b"], np.full(4, step1 + step2), atol=1e-6)
    assert procs[3].returncode == 3 and procs[7].returncode == 3
