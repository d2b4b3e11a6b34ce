"""Server optimizers and robust aggregation over real gRPC end with the model a simulation of the
same run ends with: they act in the same round engine, on the same aggregate."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.strategy import FedAvg
from fedcore.strategy.base import Strategy
from fedcore.strategy.robust import Defence, RobustAggregation
from fedcore.strategy.server_opt import FedAdam

from .conftest import run_over_grpc
from .test_sim_vs_grpc import CLIENTS, INITIAL, _local_data, linear_app

pytestmark = pytest.mark.timeout(120)


def _strategy() -> Strategy:
    inner = RobustAggregation(defence=Defence.TRIMMED_MEAN, trim_fraction=0.25,
                              inner=FedAvg(local_epochs=3, learning_rate=0.05))
    return FedAdam(inner=inner, eta=0.1)


def _engine(registry: VirtualRegistry | None = None) -> RoundEngine:
    everyone = SelectionConfig(fraction=1.0, min_results=CLIENTS, min_available=CLIENTS)
    config = EngineConfig(num_rounds=3, train=everyone, evaluate=None, round_timeout_s=60.0,
                          seed=11)
    return RoundEngine(config, _strategy(), initial_params=INITIAL, registry=registry)


def test_fedadam_on_a_trimmed_mean_over_grpc_matches_the_simulation() -> None:
    population = Population(CLIENTS, seed=0, data=_local_data)
    sim = InProcessDriver(_engine(VirtualRegistry(population)), population,
                          AppRunner(lambda cid: linear_app(population.index_of(cid)))).run()

    server = run_over_grpc(_engine(), [linear_app(i) for i in range(CLIENTS)])

    grpc_params = server.engine.params or {}
    assert [r.status for r in server.engine.records] == ["ok"] * 3
    for name, value in grpc_params.items():
        np.testing.assert_allclose(sim.params[name], value, rtol=1e-6, atol=1e-7)
    # FedAdam's first step moves every coordinate by about eta (|m / sqrt(v)| ~ 1): the
    # optimizer, not FedAvg, made this model
    assert np.all(np.abs(grpc_params["w"]) > 0.05)
    state = server.engine.snapshot().strategy_state  # type: ignore[union-attr]
    assert set(state) == {"server_opt.m.w", "server_opt.m.b", "server_opt.v.w", "server_opt.v.b"}
