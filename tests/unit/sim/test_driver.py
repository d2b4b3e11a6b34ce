"""The in-process driver over the real round engine: backends agree end to end, and memory
grows with the clients selected per round, not with the registered population."""

from __future__ import annotations

import gc
import tracemalloc
from functools import partial

import numpy as np
import pytest

from fedcore.client.torch_app import state_to_params
from fedcore.config import RoundsConfig, StrategyConfig
from fedcore.data.synthetic import NUM_CLASSES, NUM_FEATURES, synthetic_client
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.sim import simulate as simulation
from fedcore.sim.config import (
    BackendKind,
    DataConfig,
    Dataset,
    ModelKind,
    Partition,
    RunConfig,
    SimulationConfig,
)
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.strategy import FedAvg
from fedcore.training.models import logistic_regression, mlp, seeded


def _digits_config(backend: BackendKind) -> SimulationConfig:
    return SimulationConfig(
        simulation=RunConfig(clients=12, model=ModelKind.MLP, backend=backend, seed=3),
        data=DataConfig(dataset=Dataset.DIGITS, partition=Partition.DIRICHLET,
                        dirichlet_alpha=0.3),
        rounds=RoundsConfig(num_rounds=3, clients_per_round=6, eval_fraction=0.5),
        strategy=StrategyConfig(local_epochs=2, batch_size=8, learning_rate=0.05),
    )


def test_vectorised_and_sequential_runs_end_with_the_same_model() -> None:
    # arrange: Dirichlet(0.3) gives the clients very unequal sizes
    runs = {}

    # act
    for backend in (BackendKind.VECTORISED, BackendKind.SEQUENTIAL):
        runs[backend] = simulation.run(_digits_config(backend), write=False)

    # assert
    vec, seq = runs[BackendKind.VECTORISED], runs[BackendKind.SEQUENTIAL]
    assert vec.simulated_s == seq.simulated_s
    for a, b in zip(vec.records, seq.records, strict=True):
        assert (a.clients_selected, a.results_received) == (b.clients_selected, b.results_received)
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
        assert a.accuracy == pytest.approx(b.accuracy, abs=1e-9)
    for name, value in seq.params.items():
        np.testing.assert_allclose(vec.params[name], value, rtol=1e-4, atol=1e-6)
    initial = state_to_params(seeded(mlp(64, 10), 3))
    assert not np.allclose(seq.params["2.bias"], initial["2.bias"])


def _round_peak_bytes(population_size: int, per_round: int) -> int:
    data = partial(synthetic_client, 1.0, 1.0, seed=0, samples_per_client=20)
    population = Population(population_size, seed=0, data=data, num_partitions=per_round)
    model = seeded(logistic_regression(NUM_FEATURES, NUM_CLASSES), 0)
    engine = RoundEngine(
        EngineConfig(num_rounds=1, train=SelectionConfig(count=per_round),
                     evaluate=SelectionConfig(count=per_round)),
        FedAvg(batch_size=10),
        initial_params=state_to_params(model),
        registry=VirtualRegistry(population),
    )
    driver = InProcessDriver(engine, population, TorchRunner(model, population))
    gc.collect()
    tracemalloc.start()
    try:
        driver.run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_a_round_does_not_grow_with_the_population() -> None:
    # arrange: warm up (first-call allocations of torch.func are not a population's cost)
    _round_peak_bytes(1_000, 32)

    # act
    small = _round_peak_bytes(1_000, 32)
    large = _round_peak_bytes(100_000, 32)

    # assert: 100x the clients, the same round: within 20% (and far below 100 bytes a client)
    assert large < small * 1.2 + 64 * 1024, (small, large)
    assert large - small < 100 * 99_000
