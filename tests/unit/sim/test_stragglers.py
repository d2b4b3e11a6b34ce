from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import FitResult, FunctionalApp, TrainConfig
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.sim.stragglers import StragglerModel
from fedcore.strategy import FedAvg

CLIENTS = [f"c{i}" for i in range(10)]


def test_an_exact_share_of_the_selected_clients_straggles_with_fewer_epochs() -> None:
    model = StragglerModel(fraction=0.9, seed=4)

    done = model.epochs_done(CLIENTS, 3, 20)

    assert len(done) == 9 and set(done) <= set(CLIENTS)
    assert all(1 <= k <= 19 for k in done.values())
    assert done == model.epochs_done(CLIENTS, 3, 20)
    assert done != model.epochs_done(CLIENTS, 4, 20)


@pytest.mark.parametrize("accept", [True, False])
def test_partial_work_is_kept_or_misses_the_deadline(accept: bool) -> None:
    model = StragglerModel(fraction=0.5, accept_partial_work=accept)

    partial, missed = model.partial_work(CLIENTS, 1, 5)

    stragglers = model.epochs_done(CLIENTS, 1, 5)
    assert (partial, missed) == ((stragglers, set()) if accept else ({}, set(stragglers)))


def test_with_one_epoch_a_straggler_finishes_nothing() -> None:
    partial, missed = StragglerModel(fraction=0.3).partial_work(CLIENTS, 1, 1)

    assert partial == {} and len(missed) == 3


def _run(accept: bool) -> tuple[int, dict[str, list[int]]]:
    """One round over 10 virtual clients; returns (results received, epochs each app ran)."""
    seen: dict[str, list[int]] = {}

    def app_for(cid: str) -> FunctionalApp:
        def fit(params: Params, config: TrainConfig) -> FitResult:
            seen.setdefault(cid, []).append(config.local_epochs)
            return FitResult(params={"w": params["w"] + config.local_epochs}, num_examples=1)

        return FunctionalApp(get_parameters=lambda: {"w": np.zeros(1)}, fit=fit)

    population = Population(10, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    engine = RoundEngine(
        EngineConfig(num_rounds=1, train=SelectionConfig(count=10), evaluate=None),
        FedAvg(local_epochs=4), initial_params={"w": np.zeros(1)},
        registry=VirtualRegistry(population),
    )
    stragglers = StragglerModel(fraction=0.5, accept_partial_work=accept, seed=1)
    driver = InProcessDriver(engine, population, AppRunner(app_for), stragglers=stragglers)
    return driver.run().records[0].results_received, seen


def test_the_engine_aggregates_partial_work_or_closes_the_round_without_stragglers() -> None:
    expected = StragglerModel(fraction=0.5, seed=1).epochs_done(
        [f"sim-{i}" for i in range(10)], 1, 4
    )

    kept, seen_kept = _run(accept=True)
    dropped, seen_dropped = _run(accept=False)

    assert kept == 10
    assert {c: e[0] for c, e in seen_kept.items() if e[0] < 4} == expected
    assert dropped == 5 and set(seen_dropped).isdisjoint(expected)
