"""User-level DP-FedAvg through the round engine and the simulation driver, with a restart."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from opacus.accountants import RDPAccountant
from torch import nn

from fedcore.aggregate.dp_noise import AdaptiveClipping
from fedcore.client.torch_app import state_to_params
from fedcore.data.synthetic import synthetic_client
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.sim.driver import InProcessDriver, SimulationResult
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.strategy.dp_fedavg import DPFedAvg
from fedcore.training.models import seeded

POPULATION, PER_ROUND = 40, 8


def strategy(seed: int) -> DPFedAvg:
    return DPFedAvg(noise_multiplier=1.0, clip_norm=0.5, clients_per_round=PER_ROUND,
                    population=POPULATION, adaptive=AdaptiveClipping(count_noise_std=0.6),
                    learning_rate=0.05, batch_size=8, rng=np.random.default_rng(seed))


def simulate(dp: DPFedAvg, rounds: int, snapshot: EngineSnapshot | None = None
             ) -> tuple[SimulationResult, RoundEngine]:
    population = Population(POPULATION, seed=0, data=partial(
        synthetic_client, 1.0, 1.0, seed=0, samples_per_client=30))
    model = seeded(nn.Linear(60, 10), 0)
    config = EngineConfig(num_rounds=rounds, evaluate=None,
                          train=SelectionConfig(count=PER_ROUND, min_available=PER_ROUND))
    registry = VirtualRegistry(population)
    engine = (RoundEngine.restore(config, dp, snapshot, registry=registry) if snapshot else
              RoundEngine(config, dp, initial_params=state_to_params(model), registry=registry))
    return InProcessDriver(engine, population, TorchRunner(model, population)).run(), engine


def opacus_epsilon(rounds: int) -> float:
    acc = RDPAccountant()
    acc.history = [(1.0, PER_ROUND / POPULATION, rounds)]
    return float(acc.get_epsilon(delta=1e-5))


def test_history_reports_user_epsilon_clip_and_noise_each_round() -> None:
    result, _ = simulate(strategy(0), rounds=3)

    metrics = [r.metrics for r in result.records]
    assert [m["user_epsilon"] for m in metrics] == pytest.approx([opacus_epsilon(r) for r in (1, 2, 3)])
    assert metrics[0]["clip_norm"] == 0.5
    for m in metrics:
        assert m["noise_std"] == pytest.approx(strategy(0).update_noise_multiplier * m["clip_norm"])
        assert "clipped_fraction" not in m
    # adaptive clipping: each round uses the clip the previous one chose
    assert [m["clip_norm"] for m in metrics[1:]] == [m["next_clip_norm"] for m in metrics[:-1]]


def test_a_restarted_coordinator_goes_on_with_the_clip_norm_and_the_epsilon() -> None:
    # arrange: two rounds, a checkpoint, then a fresh strategy object restored from it
    first, engine = simulate(strategy(0), rounds=2)
    snapshot = engine.snapshot()
    assert snapshot is not None

    resumed, _ = simulate(strategy(1), rounds=4, snapshot=snapshot)

    later = resumed.records[2:]
    assert later[0].metrics["clip_norm"] == first.records[1].metrics["next_clip_norm"]
    assert [r.metrics["user_epsilon"] for r in later] == pytest.approx(
        [opacus_epsilon(3), opacus_epsilon(4)])
