"""Distributed-DP ε is a running account: each round priced at its own setting, kept across a
restart (checkpoint on disk, then `RoundEngine.restore`), never re-priced at the new setting."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from opacus.accountants.analysis.rdp import get_privacy_spent

from fedcore.client.app import ClientApp, FitResult
from fedcore.dp.distributed import SKELLAM_ORDERS, skellam_epsilon, skellam_rdp
from fedcore.dp.distributed_accountant import DistributedAccountant, DistributedStep
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.checkpoint import MAGIC, CheckpointError
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.records import RoundRecord
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.protocol.messages import Task
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver, SimulationResult
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import ReplayApp
from fedcore.storage.checkpoints import FILENAME, load_checkpoint, save_checkpoint
from fedcore.strategy import FedAvg

CLIENTS, DIM, DELTA = 6, 20, 1e-5


class ZeroUpdates:
    """A TaskRunner whose clients all send a zero update."""

    def run(self, task: Task, clients: Sequence[str], params: Params, *,
            epochs: Mapping[str, int] | None = None) -> dict[str, ClientApp]:
        return {cid: ReplayApp(FitResult(params={"w": np.array(params["w"])}, num_examples=1))
                for cid in clients}


def secagg(dp: DistributedDPConfig, bit_width: int = 32) -> SecureAggregationConfig:
    return SecureAggregationConfig(max_clients=CLIENTS, clip=1.0, bit_width=bit_width,
                                   threshold_fraction=0.5, distributed_dp=dp)


def config(rounds: int, sa: SecureAggregationConfig) -> EngineConfig:
    return EngineConfig(num_rounds=rounds, evaluate=None, secagg=sa,
                        train=SelectionConfig(count=CLIENTS, min_available=CLIENTS))


def run(engine: RoundEngine) -> SimulationResult:
    population = Population(CLIENTS, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    return InProcessDriver(engine, population, ZeroUpdates()).run()


def fresh(rounds: int, sa: SecureAggregationConfig) -> RoundEngine:
    population = Population(CLIENTS, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    return RoundEngine(config(rounds, sa), FedAvg(), initial_params={"w": np.zeros(DIM, np.float32)},
                       registry=VirtualRegistry(population))


def restored(rounds: int, sa: SecureAggregationConfig, snapshot: EngineSnapshot) -> RoundEngine:
    population = Population(CLIENTS, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    return RoundEngine.restore(config(rounds, sa), FedAvg(), snapshot,
                               registry=VirtualRegistry(population))


def encoding(sa: SecureAggregationConfig) -> NoisyEncoding:
    assert sa.distributed_dp is not None
    return NoisyEncoding.for_round(sa.distributed_dp, sa.for_round(CLIENTS), DIM + 1)


def epsilons(records: Sequence[RoundRecord], key: str = "distributed_epsilon") -> list[float]:
    return [r.metrics[key] for r in records]


def checkpointed(engine: RoundEngine, out: Path) -> EngineSnapshot:
    snapshot = engine.snapshot()
    assert snapshot is not None
    save_checkpoint(out, snapshot)
    stored = load_checkpoint(out)
    assert stored is not None
    return stored


def test_changed_settings_after_a_restart_price_only_the_rounds_that_used_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # arrange: two rounds at z = 2, C = 1, 32 bits; the coordinator restarts with z = 3,
    # C = 0.5, 24 bits and runs two more
    before = secagg(DistributedDPConfig(noise_multiplier=2.0, clip_norm=1.0, delta=DELTA))
    after = secagg(DistributedDPConfig(noise_multiplier=3.0, clip_norm=0.5, delta=DELTA),
                   bit_width=24)
    engine = fresh(2, before)
    run(engine)
    snapshot = checkpointed(engine, tmp_path)

    resumed = run(restored(4, after, snapshot))

    # assert: the sum of each round's own RDP, converted once, with Opacus' conversion
    old, new = encoding(before).noise, encoding(after).noise
    assert old.l2_sensitivity != new.l2_sensitivity
    curve = 2 * skellam_rdp(old, dim=DIM + 1) + 2 * skellam_rdp(new, dim=DIM + 1)
    expected, _ = get_privacy_spent(orders=list(SKELLAM_ORDERS), rdp=list(curve), delta=DELTA)
    reported = epsilons(resumed.records)
    assert [r.round for r in resumed.records] == [1, 2, 3, 4]
    assert reported[:2] == pytest.approx(
        [skellam_epsilon(old, dim=DIM + 1, rounds=r, delta=DELTA) for r in (1, 2)], rel=1e-12)
    assert reported[3] == pytest.approx(expected, rel=1e-12)
    repriced = skellam_epsilon(new, dim=DIM + 1, rounds=4, delta=DELTA)  # the old, wrong report
    assert reported[3] != pytest.approx(repriced, rel=1e-3)


def test_the_ledger_travels_in_the_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sa = secagg(DistributedDPConfig(noise_multiplier=2.0, clip_norm=1.0, delta=DELTA))
    engine = fresh(2, sa)
    run(engine)

    snapshot = checkpointed(engine, tmp_path)

    assert snapshot.distributed_dp == (
        DistributedStep(kind=IntegerNoise.SKELLAM, noise_multiplier=2.0,
                        l2_sensitivity=encoding(sa).noise.l2_sensitivity, dim=DIM + 1, rounds=2),
    )


def test_a_checkpoint_reporting_distributed_rounds_without_a_ledger_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # arrange: what an older coordinator wrote: records with ε, no per-round settings
    record = RoundRecord(round=1, status="ok", clients_selected=6, results_received=6,
                         train_loss=None, loss=None, accuracy=None, eval_clients=0,
                         duration_s=1.0, metrics={"distributed_epsilon": 4.0})
    save_checkpoint(tmp_path, EngineSnapshot(round=1, task_seq=1, params={"w": np.zeros(2)},
                                             records=(record,)))
    path = tmp_path / FILENAME
    data = path.read_bytes()
    start = len(MAGIC) + 8
    end = start + int.from_bytes(data[len(MAGIC):start], "little")
    header = json.loads(data[start:end])
    del header["distributed_dp"]
    head = json.dumps(header).encode()
    path.write_bytes(MAGIC + len(head).to_bytes(8, "little") + head + data[end:])

    with pytest.raises(CheckpointError, match="start a new run"):
        load_checkpoint(tmp_path)


def test_a_history_with_any_discrete_gaussian_round_is_reported_as_an_approximation() -> None:
    accountant = DistributedAccountant()
    accountant.record(DistributedStep(kind=IntegerNoise.SKELLAM, noise_multiplier=2.0,
                                      l2_sensitivity=100.0, dim=10))
    exact = accountant.epsilon(DELTA)
    accountant.record(DistributedStep(kind=IntegerNoise.DISCRETE_GAUSSIAN, noise_multiplier=2.0,
                                      l2_sensitivity=100.0, dim=10))

    key, eps = accountant.epsilon(DELTA)

    assert exact[0] == "distributed_epsilon" and key == "distributed_epsilon_approx"
    assert eps > exact[1]


def test_consecutive_rounds_at_one_setting_merge_and_others_do_not() -> None:
    step = DistributedStep(kind=IntegerNoise.SKELLAM, noise_multiplier=2.0, l2_sensitivity=9.0,
                           dim=10)
    other = DistributedStep(kind=IntegerNoise.SKELLAM, noise_multiplier=2.5, l2_sensitivity=9.0,
                            dim=10)
    accountant = DistributedAccountant([step, step, other, step])

    assert [s.rounds for s in accountant.steps] == [2, 1, 1]
    assert accountant.rounds == 4

