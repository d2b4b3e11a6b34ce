"""FedBuff with secure aggregation in simulation: groups of K form, train and run the protocol
in simulated time; the run learns with lost members, staleness is per group, and securing the
buffers costs simulated time against plain FedBuff on the same devices."""

from __future__ import annotations

import dataclasses

import numpy as np

from fedcore.client import EvalResult, FitResult, FunctionalApp
from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferRecord
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.buffered import BufferedDriver, BufferedSimulation
from fedcore.sim.buffered_secure import SecureBufferedDriver
from fedcore.sim.population import Population
from fedcore.sim.runners import AppRunner
from fedcore.sim.timing import TimingModel
from fedcore.strategy import FedAvg

CLIENTS, FEATURES = 20, 3
TRUE_W = np.array([0.5, -0.25, 0.75])
CONFIG = BufferedConfig(buffer_size=4, concurrency=8, num_updates=12, task_timeout_s=120.0)
SECURE = SecureAggregationConfig(max_clients=10, clip=2.0, weight_cap=40, phase_timeout_s=5.0)


def _data(index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([5, index])
    x = rng.normal(size=(10 + 5 * (index % 4), FEATURES))
    return x, x @ TRUE_W + 0.01 * rng.normal(size=len(x))


def _app(index: int) -> FunctionalApp:
    x, y = _data(index)

    def fit(params: Params, config: TrainConfig) -> FitResult:
        w = np.array(params["w"], np.float32)
        for _ in range(config.local_epochs):
            w -= np.float32(config.learning_rate) * (2 * x.T @ (x @ w - y) / len(y)).astype(
                np.float32)
        return FitResult(params={"w": w}, num_examples=len(y))

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        return EvalResult(loss=float(np.mean((x @ np.asarray(params["w"]) - y) ** 2)),
                          num_examples=len(y))

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(FEATURES, np.float32)}, fit=fit,
                         evaluate=evaluate)


def _loss(w: np.ndarray) -> float:
    return float(np.mean([np.mean((x @ w - y) ** 2) for x, y in map(_data, range(CLIENTS))]))


def _timing(dropout: float) -> TimingModel:
    return TimingModel(s_per_example=0.1, speed_sigma=1.0, latency_s=0.1, dropout=dropout, seed=2)


def _secure(dropout: float = 0.1, seed: int = 0) -> tuple[BufferedSimulation, SecureBufferedDriver]:
    population = Population(CLIENTS, seed=1, data=_data)
    engine = SecureBufferedEngine(CONFIG, FedAvg(local_epochs=3, learning_rate=0.05),
                                  {"w": np.zeros(FEATURES, np.float32)}, SECURE,
                                  random_bytes=np.random.default_rng(seed).bytes)
    runner = AppRunner(lambda cid: _app(population.index_of(cid)))
    driver = SecureBufferedDriver(engine, population, runner, timing=_timing(dropout), seed=seed)
    return driver.run(), driver


def test_secure_buffers_learn_with_lost_members() -> None:
    result, _ = _secure(dropout=0.1)
    assert [r.version for r in result.records] == list(range(1, 13))
    assert _loss(result.params["w"]) < 0.05 * _loss(np.zeros(FEATURES))
    survivors = [r.measurements["secagg_survivors"] for r in result.records]
    assert all(3 <= s <= 4 for s in survivors)  # t = 3 of K = 4 must survive
    assert min(survivors) == 3  # some group lost a member and went on without it
    for r in result.records:  # one staleness per group, one entry per survivor
        assert len(set(r.staleness)) == 1 and len(r.staleness) == r.measurements["secagg_survivors"]
    assert max(t for r in result.records for t in r.staleness) >= 1
    times = [r.at_s for r in result.records]
    assert times == sorted(times) and result.simulated_s == times[-1]


def test_a_secure_buffered_simulation_is_reproducible_up_to_its_rounding() -> None:
    """The schedule repeats exactly; the model up to the quantiser's stochastic rounding, whose
    randomness (like the masks') is the OS's, never a seed."""
    (a, _), (b, _) = _secure(), _secure()
    assert a.simulated_s == b.simulated_s
    assert [(r.staleness, r.at_s) for r in a.records] == [(r.staleness, r.at_s) for r in b.records]
    np.testing.assert_allclose(a.params["w"], b.params["w"], atol=1e-5)


def test_securing_the_buffers_costs_simulated_time() -> None:
    """Plain FedBuff folds each result on arrival; a secure group waits for its slowest member
    and three message exchanges, so the same devices reach the same number of updates later."""
    secure, _ = _secure(dropout=0.0)
    population = Population(CLIENTS, seed=1, data=_data)
    plain = BufferedDriver(
        BufferedEngine(CONFIG, FedAvg(local_epochs=3, learning_rate=0.05),
                       {"w": np.zeros(FEATURES, np.float32)}),
        population, AppRunner(lambda cid: _app(population.index_of(cid))),
        timing=_timing(0.0), seed=0).run()
    assert secure.simulated_s > plain.simulated_s
    assert _loss(plain.params["w"]) < 0.05 * _loss(np.zeros(FEATURES))


def test_secure_buffers_are_evaluated_by_idle_clients() -> None:
    population = Population(CLIENTS, seed=1, data=_data)
    config = dataclasses.replace(CONFIG, num_updates=4, eval_every=2, eval_clients=4)
    engine = SecureBufferedEngine(config, FedAvg(local_epochs=3, learning_rate=0.05),
                                  {"w": np.zeros(FEATURES, np.float32)}, SECURE)

    reported: list[BufferRecord] = []
    runner = AppRunner(lambda cid: _app(population.index_of(cid)))
    SecureBufferedDriver(engine, population, runner, timing=_timing(0.0),
                         on_record=reported.append, seed=0).run()

    assert [r.version for r in reported] == [1, 2, 3, 4]
    assert [r.eval_clients for r in reported] == [0, 4, 0, 4]
    assert reported[3].evaluation["loss"] < _loss(np.zeros(FEATURES))
