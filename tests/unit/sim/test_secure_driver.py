"""Secure aggregation in simulation: the same engine and client code as over gRPC."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from torch import nn

from fedcore.client.torch_app import state_to_params
from fedcore.data.synthetic import synthetic_client
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.secagg.config import Mode
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.sim.timing import TimingModel
from fedcore.strategy import FedAvg
from fedcore.training.models import seeded


def _run(secagg: SecureAggregationConfig | None, *, dropout: float = 0.0, rounds: int = 1):
    population = Population(30, seed=0, data=partial(
        synthetic_client, 1.0, 1.0, seed=0, samples_per_client=40))
    model = seeded(nn.Linear(60, 10), 0)
    engine = RoundEngine(
        EngineConfig(num_rounds=rounds, evaluate=None, secagg=secagg,
                     train=SelectionConfig(count=12, min_results=6, min_available=12)),
        FedAvg(local_epochs=1, batch_size=8, learning_rate=0.05),
        initial_params=state_to_params(model),
        registry=VirtualRegistry(population),
    )
    driver = InProcessDriver(engine, population, TorchRunner(model, population),
                             timing=TimingModel(dropout=dropout))
    return driver.run()


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SECAGG_PLUS])
def test_secure_rounds_give_the_plain_fedavg_model_up_to_quantisation(mode: Mode) -> None:
    plain = _run(None, rounds=2)
    secure = _run(SecureAggregationConfig(mode=mode, max_clients=50, clip=4.0, weight_cap=32), rounds=2)

    assert [r.results_received for r in secure.records] == [12, 12]
    for name, value in plain.params.items():
        np.testing.assert_allclose(secure.params[name], value, atol=1e-6)


def test_dropouts_either_leave_enough_survivors_or_fail_the_round_cleanly() -> None:
    cfg = SecureAggregationConfig(max_clients=50, clip=4.0, weight_cap=32, threshold_fraction=0.5)
    result = _run(cfg, dropout=0.3, rounds=4)

    outcomes = {(r.status, "threshold" in r.reason) for r in result.records}
    assert ("ok", False) in outcomes  # some rounds had at least t = 6 survivors
    for r in result.records:
        if r.status == "ok":
            assert 6 <= r.results_received < 12
        else:
            assert "threshold" in r.reason and r.results_received == 0
