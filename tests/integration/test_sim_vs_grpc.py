"""A simulated run and a real gRPC run with the same seeds and client apps end with the same
model: simulation goes through the same round engine and the same client task handler."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp, TrainConfig
from fedcore.engine import EngineConfig, RoundEngine, RoundRecord, SelectionConfig
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.strategy import FedAvg

from .conftest import run_over_grpc

pytestmark = pytest.mark.timeout(120)

CLIENTS, FEATURES = 4, 3
INITIAL = {"w": np.zeros(FEATURES, np.float32), "b": np.zeros(1, np.float32)}


def _local_data(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Unequal sizes (5, 12, 19, 26) and a different linear target per client."""
    rng = np.random.default_rng([7, index])
    x = rng.normal(size=(5 + 7 * index, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=FEATURES) + index).astype(np.float32)
    return x, y


def linear_app(index: int) -> FunctionalApp:
    """Least squares by full-batch gradient descent: deterministic from the client index."""
    x, y = _local_data(index)

    def fit(params: Params, config: TrainConfig) -> FitResult:
        w, b = params["w"].copy(), params["b"].copy()
        for _ in range(config.local_epochs):
            err = x @ w + b - y
            w -= config.learning_rate * (2 * x.T @ err / len(y)).astype(np.float32)
            b -= config.learning_rate * np.float32(2 * err.mean())
        return FitResult(params={"w": w, "b": b}, num_examples=len(y),
                         metrics={"loss": float(np.mean((x @ w + b - y) ** 2))})

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        loss = float(np.mean((x @ params["w"] + params["b"] - y) ** 2))
        return EvalResult(loss=loss, num_examples=len(y))

    return FunctionalApp(get_parameters=lambda: dict(INITIAL), fit=fit, evaluate=evaluate)


def _engine(registry: VirtualRegistry | None = None) -> RoundEngine:
    everyone = SelectionConfig(fraction=1.0, min_results=CLIENTS, min_available=CLIENTS)
    config = EngineConfig(num_rounds=3, train=everyone, evaluate=everyone,
                          round_timeout_s=60.0, seed=11)
    strategy = FedAvg(local_epochs=5, learning_rate=0.05, server_lr=0.9)
    return RoundEngine(config, strategy, initial_params=INITIAL, registry=registry)


def _simulate() -> tuple[dict[str, np.ndarray], list[RoundRecord]]:
    population = Population(CLIENTS, seed=0, data=_local_data)
    runner = AppRunner(lambda cid: linear_app(population.index_of(cid)))
    engine = _engine(VirtualRegistry(population))
    result = InProcessDriver(engine, population, runner).run()
    return result.params, result.records


def _deploy() -> tuple[dict[str, np.ndarray], list[RoundRecord]]:
    server = run_over_grpc(_engine(), [linear_app(i) for i in range(CLIENTS)])
    return dict(server.engine.params or {}), server.engine.records


def test_a_simulated_run_and_a_grpc_run_produce_the_same_aggregates() -> None:
    # act
    sim_params, sim_records = _simulate()
    grpc_params, grpc_records = _deploy()

    # assert: the same model, round by round the same losses (only summation order differs)
    assert sim_params.keys() == grpc_params.keys()
    for name, value in grpc_params.items():
        np.testing.assert_allclose(sim_params[name], value, rtol=1e-6, atol=1e-7)
    assert np.abs(sim_params["w"]).max() > 0.1
    assert len(sim_records) == len(grpc_records) == 3
    for s, g in zip(sim_records, grpc_records):
        assert (s.status, s.results_received, s.eval_clients) == ("ok", CLIENTS, CLIENTS)
        assert (g.status, g.results_received, g.eval_clients) == ("ok", CLIENTS, CLIENTS)
        assert s.train_loss == pytest.approx(g.train_loss, rel=1e-6)
        assert s.loss == pytest.approx(g.loss, rel=1e-6)
