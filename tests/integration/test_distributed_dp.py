"""Distributed DP under secure aggregation, through the deployed engine and client code in memory.

Clients (`fedcore.client.secure.SecureSession`, driven by the simulation driver) clip, quantise,
add integer noise and mask; the coordinator only unmasks the sum. The clients' rng is seeded
here by replacing `secrets` in that module (deployment draws it from the OS).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from fedcore.client.app import ClientApp, FitResult
from fedcore.dp.distributed import skellam_epsilon
from fedcore.dp.secagg_noise import MIN_LEVELS, NoisyEncoding
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.protocol.messages import SecAggSetup, Task
from fedcore.protocol.params import Array, Params
from fedcore.secagg.config import RoundSpec, SecAggConfig
from fedcore.sim.driver import InProcessDriver, SimulationResult
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import ReplayApp
from fedcore.sim.timing import TimingModel
from fedcore.strategy import FedAvg

CLIENTS = 10


class SeededSecrets:
    """Stands in for `secrets` in fedcore.client.secure: reproducible 128-bit seeds."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def randbits(self, k: int) -> int:
        return self._rng.getrandbits(k)


@pytest.fixture(autouse=True)
def seeded_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fedcore.client.secure.secrets", SeededSecrets(1234))


class FixedUpdates:
    """A TaskRunner whose client i always trains to the global model plus `updates[i]`."""

    def __init__(self, updates: Mapping[int, dict[str, Array]]) -> None:
        self.updates = updates

    def run(self, task: Task, clients: Sequence[str], params: Params, *,
            epochs: Mapping[str, int] | None = None) -> dict[str, ClientApp]:
        return {cid: ReplayApp(FitResult(
            params={k: params[k] + v for k, v in self.updates[int(cid.removeprefix("sim-"))].items()},
            num_examples=5,
        )) for cid in clients}


@dataclass(frozen=True, slots=True, kw_only=True)
class DropTraining(TimingModel):
    """Clients in `dropped` never report their training (so never take part in the protocol)."""

    dropped: frozenset[int] = frozenset()

    def drops(self, index: int, round_number: int, task: str) -> bool:
        return task == "train" and index in self.dropped


def run(updates: Mapping[int, dict[str, Array]], dp: DistributedDPConfig, *, rounds: int = 1,
        dropped: frozenset[int] = frozenset(), threshold_fraction: float = 0.5
        ) -> tuple[SimulationResult, dict[str, Array]]:
    initial = {k: np.zeros_like(v) for k, v in updates[0].items()}
    population = Population(CLIENTS, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    secagg = SecureAggregationConfig(max_clients=CLIENTS, clip=1.0, bit_width=32,
                                     threshold_fraction=threshold_fraction, distributed_dp=dp)
    engine = RoundEngine(
        EngineConfig(num_rounds=rounds, evaluate=None, secagg=secagg,
                     train=SelectionConfig(count=CLIENTS, min_results=1, min_available=CLIENTS)),
        FedAvg(), initial_params=initial, registry=VirtualRegistry(population),
    )
    driver = InProcessDriver(engine, population, FixedUpdates(updates),
                             timing=DropTraining(dropped=dropped))
    return driver.run(), initial


def zeros(dim: int) -> dict[int, dict[str, Array]]:
    return {i: {"w": np.zeros(dim, np.float32)} for i in range(CLIENTS)}


def round_noise(result: SimulationResult, k: int) -> np.ndarray:
    """The noise in the unmasked sum, in update units: k times the released mean (zero updates)."""
    return result.params["w"].astype(np.float64) * k


def test_noise_in_the_unmasked_sum_has_the_intended_variance() -> None:
    # arrange: zero updates, 10 survivors, t = 5: each client adds σ²/5, the sum carries 2σ²
    dp = DistributedDPConfig(noise_multiplier=0.8, clip_norm=1.0)

    result, _ = run(zeros(30_000), dp)

    m = result.records[0].metrics
    noise = round_noise(result, CLIENTS)
    assert m["secagg_survivors"] == CLIENTS and m["min_survivors"] == 5
    assert m["noise_std_sum"] == pytest.approx(np.sqrt(CLIENTS / 5) * m["noise_std"])
    assert m["noise_std"] == pytest.approx(0.8 * 1.0, rel=1e-3)  # z·Δ₂/s ≈ z·C
    assert abs(noise.mean()) < 5 * m["noise_std_sum"] / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(m["noise_std_sum"], rel=0.03)  # ~7 std errors


def test_with_exactly_t_survivors_the_noise_is_never_below_the_stated_minimum() -> None:
    # arrange: half the clients drop before the protocol, every round: exactly t = 5 survive
    dp = DistributedDPConfig(noise_multiplier=1.0, clip_norm=1.0)

    result, _ = run(zeros(20_000), dp, rounds=3, dropped=frozenset(range(5)))

    for record in result.records:
        assert record.status == "ok" and record.results_received == 5
        assert record.metrics["noise_std_sum"] == pytest.approx(record.metrics["noise_std"])
    # the model accumulates the three rounds' means: 5x it is three independent sum-noises
    total = round_noise(result, 5)
    sigma = result.records[0].metrics["noise_std"]
    assert total.std() >= 0.97 * np.sqrt(3) * sigma
    assert total.std() == pytest.approx(np.sqrt(3) * sigma, rel=0.03)


def test_the_reported_epsilon_is_skellams_for_t_survivors_after_each_round() -> None:
    dp = DistributedDPConfig(noise_multiplier=2.0, clip_norm=1.0, delta=1e-6)

    result, _ = run(zeros(100), dp, rounds=3)

    spec = SecAggConfig(threshold=5, max_clients=CLIENTS, clip=1.0, bit_width=32)
    encoding = NoisyEncoding.for_round(dp, spec, dim=101)
    expected = [skellam_epsilon(encoding.noise, dim=101, rounds=r, delta=1e-6) for r in (1, 2, 3)]
    assert [r.metrics["distributed_epsilon"] for r in result.records] == pytest.approx(expected)
    assert expected[0] < expected[1] < expected[2]


@pytest.mark.parametrize("kind", list(IntegerNoise))
def test_a_noisy_secure_round_decodes_the_clipped_mean_without_wrapping(kind: IntegerNoise) -> None:
    # arrange: client i sends i/100 on every coordinate; client 9 sends a huge update (clipped)
    dim = 40
    updates = {i: {"w": np.full(dim, i / 100, np.float32)} for i in range(CLIENTS)}
    updates[9] = {"w": np.full(dim, 1e6, np.float32)}
    dp = DistributedDPConfig(noise_multiplier=0.05, clip_norm=1.0, kind=kind)

    result, _ = run(updates, dp)

    # norms i/100·√40 < 1 pass unchanged; client 9's is clipped to norm 1: 1/√40 per coordinate
    expected = np.mean([i / 100 for i in range(9)] + [1 / np.sqrt(dim)])
    sigma_mean = result.records[0].metrics["noise_std_mean"]
    assert np.abs(result.params["w"] - expected).max() < 6 * sigma_mean + 1e-3
    key = "distributed_epsilon" if kind is IntegerNoise.SKELLAM else "distributed_epsilon_approx"
    assert key in result.records[0].metrics


def test_every_client_word_stays_within_the_protocols_range() -> None:
    # arrange: the largest noise a client could add sits inside [0, levels] around its update
    spec = RoundSpec(config=SecAggConfig(threshold=1, max_clients=100, clip=1.0, bit_width=24),
                     round_id=1, num_clients=3, dim=1001)
    dp = DistributedDPConfig(noise_multiplier=3.0, clip_norm=1.0)
    encoding = NoisyEncoding.for_round(dp, spec.config, spec.dim)
    rng = np.random.default_rng(0)

    words = [encoding.encode(rng.normal(0, 1, 1000) * s, rng) for s in (0.0, 1.0, 1e9)]

    assert encoding.quantizer.levels + 2 * encoding.offset <= spec.config.levels
    assert encoding.quantizer.levels >= MIN_LEVELS
    for w in words:
        assert int(w.min()) >= 0 and int(w.max()) <= spec.config.levels


def test_noise_shares_are_truncated_at_the_offset() -> None:
    spec = SecAggConfig(threshold=1, max_clients=2, clip=1.0, bit_width=40)
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=0.5, clip_norm=1.0),
                                       spec, dim=50_000)

    noise = encoding.sample_noise(np.random.default_rng(0))

    assert np.abs(noise).max() <= encoding.offset
    assert noise.var() == pytest.approx(encoding.noise.client_variance, rel=0.03)


def test_noise_too_large_for_the_bit_width_fails_when_configured() -> None:
    with pytest.raises(ValueError, match="raise bit_width or lower max_clients"):
        SecureAggregationConfig(max_clients=1000, bit_width=16,
                                distributed_dp=DistributedDPConfig(noise_multiplier=1.0,
                                                                   clip_norm=1.0))


def test_the_setup_carries_the_distributed_dp_settings_over_the_wire() -> None:
    from fedcore.proto.v1 import secagg_pb2
    from fedcore.wire.secagg import server_step_from_proto, server_step_to_proto

    spec = RoundSpec(config=SecAggConfig(threshold=2, max_clients=10, clip=1.0), round_id=3,
                     num_clients=4, dim=9)
    setup = SecAggSetup(client=2, spec=spec, weight_cap=10.0, distributed_dp=DistributedDPConfig(
        noise_multiplier=1.5, clip_norm=0.3, kind=IntegerNoise.DISCRETE_GAUSSIAN, delta=1e-7))
    msg = secagg_pb2.SecAggServerMessage.FromString(server_step_to_proto(setup).SerializeToString())

    assert server_step_from_proto(msg) == setup
