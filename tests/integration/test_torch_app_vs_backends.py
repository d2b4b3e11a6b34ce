"""`TorchApp` over real gRPC, the sequential backend and the vectorised backend end with the same
model for the same seeds: the simulator's clients train as the deployed client trains (one SGD
step definition, `fedcore.client.sgd`) and answer through the same `TaskHandler`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset

from fedcore.client import FitResult, TrainConfig
from fedcore.client.torch_app import TorchApp
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.strategy import FedAvg

from .conftest import run_over_grpc

pytestmark = pytest.mark.timeout(120)

CLIENTS, FEATURES, CLASSES, ROUNDS = 3, 5, 3, 2
STRATEGY = FedAvg(local_epochs=2, batch_size=4, learning_rate=0.1, proximal_mu=0.5)


def _local_data(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Unequal sizes (9, 14, 19: last batches are partial), a different rule per client."""
    rng = np.random.default_rng([3, index])
    x = rng.normal(size=(9 + 5 * index, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(axis=1).astype(np.int64)
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(FEATURES, CLASSES)


def _initial() -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in _model().state_dict().items()}


def _engine(registry: VirtualRegistry | None = None) -> RoundEngine:
    everyone = SelectionConfig(fraction=1.0, min_results=CLIENTS, min_available=CLIENTS)
    config = EngineConfig(num_rounds=ROUNDS, train=everyone, evaluate=None,
                          round_timeout_s=60.0, seed=5)
    return RoundEngine(config, STRATEGY, initial_params=_initial(), registry=registry)


def _population() -> Population:
    return Population(CLIENTS, seed=0, data=_local_data)


class SeededOrder(Sampler[int]):
    """Each epoch's example order as the simulation draws it (`epoch_orders`): a fresh
    `torch.randperm` per epoch from one generator, seeded with the round's client seed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.generator = torch.Generator()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(torch.randperm(self.size, generator=self.generator).tolist())

    def __len__(self) -> int:
        return self.size


class SeededTorchApp(TorchApp):
    """A `TorchApp` whose loader visits examples in the simulation's order for each round."""

    def __init__(self, index: int) -> None:
        x, y = _local_data(index)
        self.order = SeededOrder(len(y))
        loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                            batch_size=STRATEGY.batch_size, sampler=self.order)
        super().__init__(_model(), train_loader=loader)
        population = _population()
        self.seeds = [int(population.train_seeds([index], r)[0]) for r in range(1, ROUNDS + 1)]

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        self.order.generator.manual_seed(self.seeds.pop(0))
        return super().fit(params, config)


def _simulate(*, vectorised: bool) -> dict[str, np.ndarray]:
    population = _population()
    runner = TorchRunner(_model(), population, vectorised=vectorised, test_fraction=0.0)
    engine = _engine(VirtualRegistry(population))
    result = InProcessDriver(engine, population, runner).run()
    assert [r.results_received for r in result.records] == [CLIENTS] * ROUNDS
    return result.params


def _deploy() -> dict[str, np.ndarray]:
    server = run_over_grpc(_engine(), [SeededTorchApp(i) for i in range(CLIENTS)])
    assert [r.results_received for r in server.engine.records] == [CLIENTS] * ROUNDS
    return dict(server.engine.params or {})


def test_torch_app_over_grpc_and_both_backends_end_with_the_same_model() -> None:
    # act
    deployed = _deploy()
    sequential = _simulate(vectorised=False)
    vectorised = _simulate(vectorised=True)

    # assert: the same model up to summation order and float32 rounding
    initial = _initial()
    assert max(np.abs(deployed[k] - initial[k]).max() for k in initial) > 0.05
    for name, value in deployed.items():
        np.testing.assert_allclose(sequential[name], value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(vectorised[name], value, rtol=1e-5, atol=1e-6)
