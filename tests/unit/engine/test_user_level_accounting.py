"""User-level ε through the round engine: each round priced at the sampling that really happened.

The engine selects ceil(m(1 + o)) of the clients available at selection time and keeps the first
m results, so any selected client may count: the rate is selected / available (or selected / N
where a declared population N is smaller), never m / N. Reference: Opacus' RDPAccountant,
stepped once per round at the real rate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from fedcore.engine import RoundEngine, SelectionConfig
from fedcore.engine.records import RoundRecord
from fedcore.storage.checkpoints import load_checkpoint, save_checkpoint
from fedcore.strategy.dp_fedavg import DPFedAvg

from .conftest import Harness, engine_config

DELTA = 1e-5
M = 10


def dp(population: int, *, over_selection: float = 0.0, z: float = 1.0) -> DPFedAvg:
    return DPFedAvg(noise_multiplier=z, clip_norm=1.0, clients_per_round=M,
                    population=population, over_selection=over_selection, delta=DELTA,
                    rng=np.random.default_rng(0))


def play(h: Harness) -> set[str]:
    """One round: the first M selected clients (in id order) report; the rest are too slow."""
    tasks = h.tasks()
    for cid in sorted(tasks)[:M]:
        h.submit(cid, tasks[cid])
    return set(tasks)


def reference(steps: Sequence[tuple[float, float]]) -> list[float]:
    """Opacus' ε after each of `steps` (z, q)."""
    accountant, out = RDPAccountant(), []
    for z, q in steps:
        accountant.step(noise_multiplier=z, sample_rate=q)
        out.append(accountant.get_epsilon(delta=DELTA))
    return out


def user_epsilons(records: Sequence[RoundRecord]) -> list[float]:
    return [r.metrics["user_epsilon"] for r in records]


def test_over_selection_is_accounted_at_the_selected_count_over_the_available(
        make_harness: Callable[..., Harness]) -> None:
    # arrange: 40 available, 40 declared, m = 10 with 50% over-selection: 15 drawn per round
    h = make_harness(clients=40, num_rounds=3, strategy=dp(40, over_selection=0.5),
                     train=SelectionConfig(count=M, over_selection=0.5, min_available=M))

    drawn = [play(h) for _ in range(3)]

    records = h.engine.records
    assert [len(d) for d in drawn] == [15, 15, 15]
    assert [r.results_received for r in records] == [M, M, M]
    assert [r.metrics["user_sample_rate"] for r in records] == [15 / 40] * 3
    assert user_epsilons(records) == pytest.approx(reference([(1.0, 15 / 40)] * 3), rel=1e-12)
    assert user_epsilons(records)[-1] > reference([(1.0, M / 40)] * 3)[-1]  # m/N understates


def test_fewer_clients_available_than_declared_are_accounted_at_the_observed_pool(
        make_harness: Callable[..., Harness]) -> None:
    # arrange: N = 1000 declared, only 40 ever join
    h = make_harness(clients=40, num_rounds=2, strategy=dp(1000),
                     train=SelectionConfig(count=M, min_available=M))

    for _ in range(2):
        play(h)

    records = h.engine.records
    assert [r.metrics["user_sample_rate"] for r in records] == [M / 40] * 2
    assert user_epsilons(records) == pytest.approx(reference([(1.0, M / 40)] * 2), rel=1e-12)


def test_a_round_with_fewer_clients_available_is_priced_at_its_own_larger_rate(
        make_harness: Callable[..., Harness]) -> None:
    # arrange: 40 clients for round 1; 20 that do not report leave before it closes
    h = make_harness(clients=40, num_rounds=2, strategy=dp(1000, over_selection=0.5),
                     train=SelectionConfig(count=M, over_selection=0.5, min_available=M))
    tasks = h.tasks()
    reporters = sorted(tasks)[:M]
    for cid in reporters[:-1]:
        h.submit(cid, tasks[cid])
    for cid in sorted(set(h.sessions) - set(reporters))[:20]:
        h.engine.leave(cid, now=h.now)
        del h.sessions[cid]
    h.submit(reporters[-1], tasks[reporters[-1]])  # round 1 closes, round 2 opens among 20

    play(h)

    rates = [r.metrics["user_sample_rate"] for r in h.engine.records]
    assert rates == [15 / 40, 15 / 20]
    assert user_epsilons(h.engine.records) == pytest.approx(
        reference([(1.0, 15 / 40), (1.0, 15 / 20)]), rel=1e-12)


def test_a_declared_population_smaller_than_observed_gives_the_larger_rate(
        make_harness: Callable[..., Harness]) -> None:
    h = make_harness(clients=40, num_rounds=1, strategy=dp(20),
                     train=SelectionConfig(count=M, min_available=M))

    play(h)

    assert h.engine.records[0].metrics["user_sample_rate"] == M / 20


def test_after_a_restart_with_another_z_past_rounds_keep_their_price(
        make_harness: Callable[..., Harness], tmp_path) -> None:  # type: ignore[no-untyped-def]
    # arrange: two rounds at z = 1 with 15 of 40 drawn, a checkpoint on disk
    train = SelectionConfig(count=M, over_selection=0.5, min_available=M)
    first = make_harness(clients=40, num_rounds=3, strategy=dp(40, over_selection=0.5),
                         train=train)
    play(first)
    play(first)
    snapshot = first.engine.snapshot()
    assert snapshot is not None
    save_checkpoint(tmp_path, snapshot)
    stored = load_checkpoint(tmp_path)
    assert stored is not None

    # act: the coordinator comes back with z = 2 and only 30 clients
    resumed = make_harness(clients=0, num_rounds=3, train=train)
    resumed.engine = RoundEngine.restore(engine_config(num_rounds=3, train=train),
                                         dp(40, over_selection=0.5, z=2.0), stored)
    resumed.join(*(f"c{i}" for i in range(30)))
    play(resumed)

    # assert
    assert user_epsilons(resumed.engine.records) == pytest.approx(
        reference([(1.0, 15 / 40), (1.0, 15 / 40), (2.0, 15 / 30)]), rel=1e-12)
