"""Local DP-SGD in simulation: both backends give the same models, ε per client is Opacus'
RDP accountant's, and a client over its budget declines for good."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pytest

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.client.torch_app import state_to_params
from fedcore.data.synthetic import NUM_CLASSES, NUM_FEATURES, synthetic_client
from fedcore.dp.opacus import HistoryEntry, Mechanism, epsilon
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.messages import LocalDPConfig, TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import ClientStateStore, Population
from fedcore.sim.privacy import ClientPrivacy
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.strategy import FedAvg
from fedcore.training.models import logistic_regression, seeded

DP = LocalDPConfig(noise_multiplier=0.8, max_grad_norm=0.5)


@dataclass(frozen=True)
class PrivateFedAvg:
    """FedAvg whose clients train with local DP-SGD."""

    dp: LocalDPConfig
    inner: FedAvg = field(
        default_factory=lambda: FedAvg(local_epochs=2, batch_size=8, learning_rate=0.1)
    )

    def train_config(self, round_number: int) -> TrainConfig:
        base = self.inner.train_config(round_number)
        return TrainConfig(local_epochs=base.local_epochs, batch_size=base.batch_size,
                           learning_rate=base.learning_rate, local_dp=self.dp)

    def aggregator(self, round_number: int) -> Aggregator:
        return self.inner.aggregator(round_number)

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        return self.inner.apply(params, result)


def _driver(vectorised: bool, dp: LocalDPConfig = DP, rounds: int = 2) -> InProcessDriver:
    data = partial(synthetic_client, 1.0, 1.0, seed=0)  # unequal sizes: 50..
    population = Population(6, seed=1, data=lambda i: tuple(a[:40 + 13 * i] for a in data(i)))
    model = seeded(logistic_regression(NUM_FEATURES, NUM_CLASSES), 0)
    engine = RoundEngine(
        EngineConfig(num_rounds=rounds, train=SelectionConfig(count=4), evaluate=None, seed=2),
        PrivateFedAvg(dp), initial_params=state_to_params(model),
        registry=VirtualRegistry(population),
    )
    runner = TorchRunner(model, population, vectorised=vectorised, opacus_noise=True)
    return InProcessDriver(engine, population, runner)


def test_vectorised_dp_sgd_ends_with_the_model_opacus_gives() -> None:
    vec, seq = _driver(vectorised=True).run(), _driver(vectorised=False).run()

    for name, value in seq.params.items():
        np.testing.assert_allclose(vec.params[name], value, rtol=1e-4, atol=1e-6)
    for a, b in zip(vec.records, seq.records, strict=True):
        assert a.metrics["epsilon"] == pytest.approx(b.metrics["epsilon"])
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)


def test_client_epsilon_is_opacus_rdp_of_its_whole_history() -> None:
    privacy = ClientPrivacy(ClientStateStore())
    entries = []
    for epochs in (3, 1, 3):
        task = privacy.plan(7, 123, dp=DP, batch_size=10, epochs=epochs, local_epochs=3)
        privacy.record(7, task)
        entries.append(task.entry)

    expected = epsilon(entries, delta=DP.delta, mechanism=Mechanism.RDP)
    assert privacy.epsilon(7, DP.delta) == pytest.approx(expected, rel=1e-9)
    assert entries[1] == HistoryEntry(noise_multiplier=0.8, sample_rate=1 / 13, steps=13)
    assert privacy.epsilon(8, DP.delta) == 0.0


def test_a_client_past_its_budget_declines_and_is_not_selected_again() -> None:
    # arrange: the noise is calibrated for 1 planned round of a 1.0 budget
    budget = LocalDPConfig(target_epsilon=1.0, planned_rounds=1, max_grad_norm=0.5)

    driver = _driver(vectorised=True, dp=budget, rounds=2)

    # act: 4 of 6 clients per round; who trained in round 1 cannot train again
    first, second = driver.run().records

    # assert
    assert first.results_received == 4 and first.metrics["epsilon"] <= 1.0
    assert second.results_received == 1  # the selection drew 3 of round 1's four again
    privacy = ClientPrivacy(driver.population.state)
    assert len(driver.population.state) == 5
    assert all(privacy.epsilon(i, budget.delta) <= 1.0 for i in driver.population.state)
    assert len(driver.engine.available_clients(0.0)) == 6 - 3
