"""FedBuff in simulation: a run with slow and fast devices learns, slow devices' results arrive
stale and are weighted down, and a run is reproducible from its seeds."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp
from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferRecord
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.buffered import BufferedDriver, BufferedSimulation
from fedcore.sim.population import Population
from fedcore.sim.runners import AppRunner
from fedcore.sim.timing import TimingModel
from fedcore.strategy import FedAvg

CLIENTS, FEATURES = 20, 3
TRUE_W = np.array([1.0, -2.0, 0.5])


def _data(index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([3, index])
    x = rng.normal(size=(10 + 5 * (index % 4), FEATURES))
    return x, x @ TRUE_W + 0.01 * rng.normal(size=len(x))


def _app(index: int) -> FunctionalApp:
    x, y = _data(index)

    def fit(params: Params, config: TrainConfig) -> FitResult:
        w = np.array(params["w"])
        for _ in range(config.local_epochs):
            w -= config.learning_rate * 2 * x.T @ (x @ w - y) / len(y)
        return FitResult(params={"w": w}, num_examples=len(y))

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        return EvalResult(loss=float(np.mean((x @ np.asarray(params["w"]) - y) ** 2)),
                          num_examples=len(y))

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(FEATURES)}, fit=fit,
                         evaluate=evaluate)


def _loss(w: np.ndarray) -> float:
    return float(np.mean([np.mean((x @ w - y) ** 2) for x, y in map(_data, range(CLIENTS))]))


def _run(seed: int = 0) -> BufferedSimulation:
    population = Population(CLIENTS, seed=1, data=_data)
    config = BufferedConfig(buffer_size=4, concurrency=8, num_updates=15, task_timeout_s=60.0)
    engine = BufferedEngine(config, FedAvg(local_epochs=3, learning_rate=0.05),
                            {"w": np.zeros(FEATURES)})
    timing = TimingModel(s_per_example=0.1, speed_sigma=1.0, latency_s=0.1, dropout=0.1,
                         seed=2)
    runner = AppRunner(lambda cid: _app(population.index_of(cid)))
    return BufferedDriver(engine, population, runner, timing=timing, seed=seed).run()


def test_a_buffered_simulation_learns_with_stale_results_weighted_down() -> None:
    result = _run()
    assert len(result.records) == 15
    assert [r.version for r in result.records] == list(range(1, 16))
    assert all(len(r.staleness) == 4 for r in result.records)
    assert _loss(result.params["w"]) < 0.05 * _loss(np.zeros(FEATURES))
    staleness = [t for r in result.records for t in r.staleness]
    assert max(staleness) >= 1  # slow devices delivered results from older versions
    stale_record = next(r for r in result.records if max(r.staleness) > 0)
    expected = sum((1 + t) ** -0.5 for t in stale_record.staleness)
    assert stale_record.measurements["staleness_weight"] == pytest.approx(expected)
    times = [r.at_s for r in result.records]
    assert times == sorted(times) and result.simulated_s == times[-1]
    assert result.tasks >= 60  # K results per update, plus lost and unfinished tasks


def test_a_buffered_simulation_is_reproducible() -> None:
    a, b = _run(), _run()
    np.testing.assert_array_equal(a.params["w"], b.params["w"])
    assert a.simulated_s == b.simulated_s
    assert [r.staleness for r in a.records] == [r.staleness for r in b.records]


def test_evaluation_tasks_go_to_idle_clients_and_each_step_is_reported_once_evaluated() -> None:
    population = Population(CLIENTS, seed=1, data=_data)
    config = BufferedConfig(buffer_size=4, concurrency=8, num_updates=6, task_timeout_s=60.0,
                            eval_every=3, eval_clients=5)
    engine = BufferedEngine(config, FedAvg(local_epochs=3, learning_rate=0.05),
                            {"w": np.zeros(FEATURES)})

    reported: list[BufferRecord] = []
    runner = AppRunner(lambda cid: _app(population.index_of(cid)))
    result = BufferedDriver(engine, population, runner, timing=TimingModel(
        s_per_example=0.1, speed_sigma=1.0, latency_s=0.1, seed=2), on_record=reported.append,
        seed=0).run()

    assert [r.version for r in reported] == list(range(1, 7))  # each once, in order
    assert [r.eval_clients for r in reported] == [0, 0, 5, 0, 0, 5]
    losses = [r.evaluation["loss"] for r in reported if r.eval_clients]
    assert losses[1] < losses[0] < _loss(np.zeros(FEATURES))  # the model improves
    assert result.tasks >= 6 * 4 + 2 * 5
