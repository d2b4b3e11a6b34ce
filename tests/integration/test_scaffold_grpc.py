"""SCAFFOLD over real gRPC: the control variates ride the ordinary download and results, each
client keeps its own in its state directory, and the run ends where the simulation of the same
run ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.client import BackgroundClient, FitResult
from fedcore.client.scaffold import BlobVariates, variate_spec
from fedcore.client.state import StateDir
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.sim.scaffold import ScaffoldHandlers, StoredVariates
from fedcore.strategy.scaffold import Scaffold, with_control_variate
from fedcore.transport.grpc.server import CoordinatorServer

pytestmark = pytest.mark.timeout(120)

H = (1.0, 10.0, 3.0)  # each client's curvature ...
A = (0.0, 10.0, -4.0)  # ... and own optimum
INITIAL = with_control_variate({"w": np.zeros(2, np.float32)})
ROUNDS = 4


class QuadraticApp:
    """f(y) = h/2 ||y - a||^2, 8 gradient steps per task, in float32 as the model is."""

    def __init__(self, index: int) -> None:
        self.h, self.a = H[index], A[index]

    def get_parameters(self) -> Params:
        return {"w": np.zeros(2, np.float32)}

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        raise AssertionError("a SCAFFOLD run calls fit_corrected")

    def fit_corrected(self, params: Params, config: TrainConfig,
                      correction: dict[str, np.ndarray]) -> FitResult:
        y = np.array(params["w"], np.float32)
        for _ in range(8):
            y = y - np.float32(config.learning_rate) * (
                np.float32(self.h) * (y - np.float32(self.a)) + correction["w"].astype(np.float32))
        return FitResult(params={"w": y}, num_examples=10, local_steps=8)

    def evaluate(self, params: Params, config: TrainConfig) -> object:
        raise NotImplementedError


def _engine(registry: VirtualRegistry | None = None) -> RoundEngine:
    everyone = SelectionConfig(fraction=1.0, min_results=len(H), min_available=len(H))
    config = EngineConfig(num_rounds=ROUNDS, train=everyone, evaluate=None,
                          round_timeout_s=60.0, seed=5)
    strategy = Scaffold(num_clients=len(H), learning_rate=0.05)
    return RoundEngine(config, strategy, initial_params=INITIAL, registry=registry)


def test_scaffold_over_grpc_matches_the_simulation(tmp_path: Path) -> None:
    population = Population(len(H), seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    sim = InProcessDriver(_engine(VirtualRegistry(population)), population,
                          AppRunner(lambda cid: QuadraticApp(population.index_of(cid))),
                          handler=ScaffoldHandlers(population)).run()

    server = CoordinatorServer(_engine(), long_poll_s=0.5, linger_s=0.5)
    server.start()
    clients = [BackgroundClient(QuadraticApp(i), f"127.0.0.1:{server.port}",  # type: ignore[arg-type]
                                client_id=f"sim-{i}", state_dir=tmp_path / f"client-{i}")
               for i in range(len(H))]
    try:
        for client in clients:
            client.start()
        assert server.wait(90), "the gRPC run did not finish"
    finally:
        for client in clients:
            client.stop(timeout=10)
        server.stop()
    assert all(c.error is None for c in clients)
    assert [r.status for r in server.engine.records] == ["ok"] * ROUNDS

    final = server.engine.params or {}
    assert set(final) == {"w", "scaffold.c/w"}
    for name, value in final.items():
        np.testing.assert_allclose(sim.params[name], value, rtol=1e-5, atol=1e-6)
    assert np.abs(final["scaffold.c/w"]).max() > 0.1  # the server variate moved
    spec = variate_spec({"w": np.zeros(2)})
    for i in range(len(H)):  # each client's c_i is in its state directory, as simulated
        with StateDir.open(tmp_path / f"client-{i}") as state:
            kept = BlobVariates(state).load(spec)
        simulated = StoredVariates(population.control_variates, i).load(spec)
        assert kept is not None and simulated is not None
        np.testing.assert_allclose(kept["w"], simulated["w"], rtol=1e-5, atol=1e-6)
