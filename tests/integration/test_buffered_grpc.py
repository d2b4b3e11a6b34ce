"""FedBuff over real gRPC: the unchanged coordinator service and client SDK drive the buffered
engine; results fold as they arrive and the model moves every K of them."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import BackgroundClient, FitResult, FunctionalApp
from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine
from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

pytestmark = pytest.mark.timeout(120)

CLIENTS, FEATURES, K, UPDATES = 4, 3, 2, 6
TRUE_W = np.array([1.0, -2.0, 0.5], np.float32)


def _data(index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([5, index])
    x = rng.normal(size=(8 + 4 * index, FEATURES)).astype(np.float32)
    return x, (x @ TRUE_W).astype(np.float32)


def _app(index: int) -> FunctionalApp:
    x, y = _data(index)

    def fit(params: Params, config: TrainConfig) -> FitResult:
        w = np.array(params["w"], np.float32)
        for _ in range(config.local_epochs):
            w -= np.float32(config.learning_rate) * (2 * x.T @ (x @ w - y) / len(y))
        return FitResult(params={"w": w.astype(np.float32)}, num_examples=len(y))

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(FEATURES, np.float32)}, fit=fit)


def _loss(w: np.ndarray) -> float:
    return float(np.mean([np.mean((x @ w - y) ** 2) for x, y in map(_data, range(CLIENTS))]))


def test_fedbuff_over_grpc_steps_every_k_results_and_learns() -> None:
    engine = BufferedEngine(
        BufferedConfig(buffer_size=K, concurrency=3, num_updates=UPDATES, task_timeout_s=30.0),
        FedAvg(local_epochs=3, learning_rate=0.05), {"w": np.zeros(FEATURES, np.float32)})
    coordinator = BufferedCoordinator(engine, EngineConfig(num_rounds=1, retry_after_s=0.1))
    server = CoordinatorServer(coordinator, long_poll_s=0.2, linger_s=0.5)  # type: ignore[arg-type]
    server.start()
    clients = [BackgroundClient(_app(i), f"127.0.0.1:{server.port}", client_id=f"c{i}")
               for i in range(CLIENTS)]
    try:
        for client in clients:
            client.start()
        assert server.wait(90), "the buffered gRPC run did not finish"
    finally:
        for client in clients:
            client.stop(timeout=10)
        server.stop()
    assert all(c.error is None for c in clients)
    assert engine.version == UPDATES
    assert [len(r.staleness) for r in engine.records] == [K] * UPDATES
    records = coordinator.records
    assert [r.round for r in records] == list(range(1, UPDATES + 1))
    assert all(r.results_received == K and "mean_staleness" in r.metrics for r in records)
    assert _loss(engine.params["w"]) < 0.2 * _loss(np.zeros(FEATURES, np.float32))
