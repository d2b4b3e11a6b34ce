"""Virtual clients answer through the deployed client's `TaskHandler`: a privacy floor given
to their handlers refuses tasks in simulation exactly as it does in deployment."""

from __future__ import annotations

import numpy as np

from fedcore.client import FitResult, FunctionalApp, TrainConfig
from fedcore.client.app import ClientApp
from fedcore.client.floor import PrivacyFloor
from fedcore.client.handler import TaskHandler
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.strategy import FedAvg

STRICT = {"sim-0", "sim-1"}  # these clients take part in secure rounds only


def _app(cid: str, trained: list[str]) -> FunctionalApp:
    def fit(params: Params, config: TrainConfig) -> FitResult:
        trained.append(cid)
        return FitResult(params={"w": params["w"] + 1}, num_examples=1)

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(2, np.float32)}, fit=fit)


def _handler(app: ClientApp, cid: str) -> TaskHandler:
    floor = PrivacyFloor(require_secure_aggregation=True) if cid in STRICT else None
    return TaskHandler(app, cid, floor=floor)


def test_a_floor_on_virtual_clients_declines_plain_rounds_for_good() -> None:
    # arrange
    population = Population(4, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    engine = RoundEngine(
        EngineConfig(num_rounds=2, evaluate=None,
                     train=SelectionConfig(count=4, min_results=2, min_available=2)),
        FedAvg(), initial_params={"w": np.zeros(2, np.float32)},
        registry=VirtualRegistry(population),
    )
    trained: list[str] = []
    runner = AppRunner(lambda cid: _app(cid, trained))
    driver = InProcessDriver(engine, population, runner, handler=_handler)

    # act
    first, second = driver.run().records

    # assert: the strict clients refused round 1 for good, before training, and were not
    # selected again
    assert (first.results_received, second.results_received) == (2, 2)
    assert sorted(trained) == ["sim-2", "sim-2", "sim-3", "sim-3"]
    assert set(engine.available_clients(driver.now)) == {"sim-2", "sim-3"}
    np.testing.assert_array_equal(driver.engine.params["w"], [2, 2])
