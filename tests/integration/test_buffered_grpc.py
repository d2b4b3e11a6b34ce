"""FedBuff over real gRPC: the unchanged coordinator service and client SDK drive the buffered
engine; results fold as they arrive and the model moves every K of them, or, with secure
aggregation, every secure group of K."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import BackgroundClient, EvalResult, FitResult, FunctionalApp
from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine, Outcome
from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.messages import MASKED_TENSOR, TaskResult, TrainConfig
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

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        w = np.asarray(params["w"], np.float32)
        return EvalResult(loss=float(np.mean((x @ w - y) ** 2)), num_examples=len(y))

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(FEATURES, np.float32)}, fit=fit,
                         evaluate=evaluate)


def _loss(w: np.ndarray) -> float:
    return float(np.mean([np.mean((x @ w - y) ** 2) for x, y in map(_data, range(CLIENTS))]))


def _run(coordinator: BufferedCoordinator, *, long_poll_s: float) -> None:
    """Serve `coordinator` on loopback to the SDK clients until the run ends; none failed."""
    server = CoordinatorServer(coordinator, long_poll_s=long_poll_s, linger_s=0.5)
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


def test_fedbuff_over_grpc_steps_every_k_results_and_learns() -> None:
    engine = BufferedEngine(
        BufferedConfig(buffer_size=K, concurrency=3, num_updates=UPDATES, task_timeout_s=30.0,
                       eval_every=3, eval_clients=2),
        FedAvg(local_epochs=3, learning_rate=0.05), {"w": np.zeros(FEATURES, np.float32)})
    coordinator = BufferedCoordinator(engine, EngineConfig(num_rounds=1, retry_after_s=0.1))
    _run(coordinator, long_poll_s=0.2)
    assert engine.version == UPDATES
    assert [len(r.staleness) for r in engine.records] == [K] * UPDATES
    records = coordinator.records
    assert [r.round for r in records] == list(range(1, UPDATES + 1))
    assert all(r.results_received == K and "mean_staleness" in r.metrics for r in records)
    evaluated = [r for r in records if r.eval_clients]  # versions 3 and 6, over the SDK
    assert [r.round for r in evaluated] == [3, 6] and all(r.eval_clients == 2 for r in evaluated)
    assert evaluated[1].loss is not None and evaluated[1].loss < _loss(np.zeros(FEATURES))
    assert _loss(engine.params["w"]) < 0.2 * _loss(np.zeros(FEATURES, np.float32))


def test_secure_fedbuff_over_grpc_each_buffer_a_secure_group_of_k() -> None:
    """With secure aggregation each buffer is one secure group: the SDK runs its protocol steps
    unchanged, group phases wake the long polls (a long hold of 5 s would otherwise pace every
    phase), and the coordinator only ever receives masked vectors."""
    secure = SecureAggregationConfig(max_clients=10, clip=4.0, weight_cap=40.0,
                                     phase_timeout_s=20.0)
    engine = SecureBufferedEngine(
        BufferedConfig(buffer_size=K, concurrency=4, num_updates=4, task_timeout_s=60.0),
        FedAvg(local_epochs=3, learning_rate=0.05), {"w": np.zeros(FEATURES, np.float32)},
        secure)
    coordinator = BufferedCoordinator(engine, EngineConfig(num_rounds=1, retry_after_s=0.1,
                                                           secagg=secure))
    received: list[str] = []
    submit = engine.submit

    def spy(result: TaskResult, *, now: float) -> Outcome:
        received.extend(result.tensors)
        return submit(result, now=now)

    engine.submit = spy  # type: ignore[method-assign]
    _run(coordinator, long_poll_s=5.0)
    assert engine.version == 4 and engine.groups_failed == 0
    assert all(r.measurements["secagg_survivors"] == K for r in engine.records)
    assert all(len(set(r.staleness)) == 1 for r in engine.records)  # one τ per group
    assert received and set(received) == {MASKED_TENSOR}
    assert [r.round for r in coordinator.records] == [1, 2, 3, 4]
    assert _loss(engine.params["w"]) < 0.5 * _loss(np.zeros(FEATURES, np.float32))
