"""Local DP-SGD: the deployed client (`TorchApp` through its `TaskHandler`) and the simulator's
DP backends (the vectorised kernel, `sim/backends/private.py`, and the Opacus reference,
`sim/backends/opacus_reference.py`) end with the same model and report the same ε for the same
seeds, noise included: each client's Poisson batches come from a generator seeded with its
round seed and its Gaussian noise from `client_noise_generator(seed)`, as the simulator draws
them with `opacus_noise=True`. Changing the sampling, the clipping, the noise, the proximal
term or the accounting on either side fails this test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client import FitResult, TrainConfig
from fedcore.client.torch_app import TorchApp
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.records import RoundRecord
from fedcore.protocol.messages import LocalDPConfig
from fedcore.protocol.params import Params
from fedcore.sim.backends.private import NOISE_SALT
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner, TorchRunner
from fedcore.strategy import FedAvg

CLIENTS, FEATURES, CLASSES, ROUNDS = 3, 5, 3, 2
DP = LocalDPConfig(noise_multiplier=0.7, max_grad_norm=0.3)  # tight: most examples clipped
STRATEGY = FedAvg(local_epochs=2, batch_size=4, learning_rate=0.2, proximal_mu=0.5, local_dp=DP)


def _local_data(index: int) -> tuple[np.ndarray, np.ndarray]:
    """Unequal sizes (9, 14, 19), a different rule per client."""
    rng = np.random.default_rng([7, index])
    x = rng.normal(size=(9 + 5 * index, FEATURES)).astype(np.float32) * 3
    y = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(axis=1).astype(np.int64)
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(FEATURES, CLASSES)


def _engine(population: Population) -> RoundEngine:
    everyone = SelectionConfig(fraction=1.0, min_results=CLIENTS, min_available=CLIENTS)
    config = EngineConfig(num_rounds=ROUNDS, train=everyone, evaluate=None, seed=5)
    initial = {k: v.detach().numpy().copy() for k, v in _model().state_dict().items()}
    return RoundEngine(config, STRATEGY, initial_params=initial,
                       registry=VirtualRegistry(population))


def _population() -> Population:
    return Population(CLIENTS, seed=0, data=_local_data)


class SeededPrivateApp(TorchApp):
    """A `TorchApp` whose Poisson sampler and DP noise are seeded with the simulation's seeds
    for each round (the noise through torch's default generator, which Opacus draws from when
    no generator is given; the driver runs one client at a time)."""

    def __init__(self, index: int) -> None:
        x, y = _local_data(index)
        self.sampling = torch.Generator()
        loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                            batch_size=STRATEGY.batch_size, generator=self.sampling)
        super().__init__(_model(), train_loader=loader)
        population = _population()
        self.seeds = [int(population.train_seeds([index], r)[0]) for r in range(1, ROUNDS + 1)]

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        seed = self.seeds.pop(0)
        self.sampling.manual_seed(seed)
        torch.manual_seed(seed ^ NOISE_SALT)  # = client_noise_generator(seed)
        return super().fit(params, config)


def _deployed() -> tuple[dict[str, np.ndarray], list[RoundRecord]]:
    population = _population()
    apps = {f"sim-{i}": SeededPrivateApp(i) for i in range(CLIENTS)}
    result = InProcessDriver(_engine(population), population, AppRunner(apps.__getitem__)).run()
    return result.params, result.records


def _simulated(*, vectorised: bool) -> tuple[dict[str, np.ndarray], list[RoundRecord]]:
    population = _population()
    runner = TorchRunner(_model(), population, vectorised=vectorised, test_fraction=0.0,
                         opacus_noise=True)
    result = InProcessDriver(_engine(population), population, runner).run()
    return result.params, result.records


@pytest.mark.parametrize("vectorised", [True, False], ids=["vectorised", "opacus-reference"])
def test_torch_app_and_the_dp_backends_train_and_account_alike(vectorised: bool) -> None:
    # act
    deployed, deployed_records = _deployed()
    simulated, simulated_records = _simulated(vectorised=vectorised)

    # assert: every round had every client, spent privacy, and the same ε on both sides
    assert [r.results_received for r in deployed_records] == [CLIENTS] * ROUNDS
    assert [r.results_received for r in simulated_records] == [CLIENTS] * ROUNDS
    spent = [r.epsilons() for r in deployed_records]
    assert spent[0] and all(0 < e < float("inf") for e in spent[0].values())
    assert [r.epsilons() for r in simulated_records] == [
        pytest.approx(e, rel=1e-9) for e in spent]
    # and the same model (noise included) up to summation order and float32 rounding
    initial = {k: v.detach().numpy() for k, v in _model().state_dict().items()}
    assert max(np.abs(deployed[k] - initial[k]).max() for k in initial) > 0.05
    for name, value in deployed.items():
        np.testing.assert_allclose(simulated[name], value, rtol=1e-4, atol=1e-5)
