"""Server optimizers against Reddi et al. 2021 (Algorithm 2) and Hsu et al. 2019, computed by hand;
their state survives a checkpoint so a resumed run follows the same trajectory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.aggregate.base import AggregateResult
from fedcore.client import EvalResult, FitResult, FunctionalApp, TrainConfig
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.checkpoint import checkpoint_from_bytes, checkpoint_to_bytes
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.strategy import FedAvg
from fedcore.strategy.server_opt import (
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedYogi,
    Rule,
    ServerOptimizer,
)


def step(strategy: ServerOptimizer, params: Params, delta: list[float]) -> dict[str, np.ndarray]:
    result = AggregateResult(update={"w": np.array(delta, np.float64)}, count=1, total_weight=1.0)
    return strategy.apply(params, result)


def run(strategy: ServerOptimizer, deltas: list[list[float]]) -> list[np.ndarray]:
    params: Params = {"w": np.zeros(len(deltas[0]), np.float64)}
    trajectory = []
    for delta in deltas:
        params = step(strategy, params, delta)
        trajectory.append(params["w"].copy())
    return trajectory


# Settings that make the square roots exact: tau = 0.5 (v_{-1} = 0.25), beta1 = 0.5, beta2 = 0.75.
HAND = {"eta": 1.0, "beta1": 0.5, "beta2": 0.75, "tau": 0.5}


def test_fedadagrad_follows_algorithm_2_by_hand() -> None:
    # Δ1 = 1.2: m1 = 0.5*1.2 = 0.6, v1 = 0.25 + 1.44 = 1.69 (√ 1.3), x1 = 0.6 / (1.3 + 0.5) = 1/3
    # Δ2 = -8.4: m2 = 0.3 - 4.2 = -3.9, v2 = 1.69 + 70.56 = 72.25 (√ 8.5), x2 = 1/3 - 3.9/9
    # second coordinate Δ = 0 then 0.5: m = 0, 0.25; v = 0.25, 0.5; x = 0, 0.25 / (√0.5 + 0.5)
    xs = run(FedAdagrad(**HAND), [[1.2, 0.0], [-8.4, 0.5]])

    np.testing.assert_allclose(xs[0], [1 / 3, 0.0])
    np.testing.assert_allclose(xs[1], [1 / 3 - 3.9 / 9, 0.25 / (math.sqrt(0.5) + 0.5)])


def test_fedadam_follows_algorithm_2_by_hand() -> None:
    # Δ1 = 0.75: m1 = 0.375, v1 = 0.75*0.25 + 0.25*0.5625 = 0.328125, x1 = 0.375/(√v1 + 0.5)
    # Δ2 = 0.5:  m2 = 0.1875 + 0.25 = 0.4375, v2 = 0.75*v1 + 0.25*0.25 = 0.30859375
    v1, v2 = 0.328125, 0.75 * 0.328125 + 0.0625
    x1 = 0.375 / (math.sqrt(v1) + 0.5)
    x2 = x1 + 0.4375 / (math.sqrt(v2) + 0.5)
    # Δ3 = -2: m3 = 0.21875 - 1 = -0.78125, v3 = 0.75*v2 + 0.25*4
    v3 = 0.75 * v2 + 1.0
    x3 = x2 - 0.78125 / (math.sqrt(v3) + 0.5)

    xs = run(FedAdam(**HAND), [[0.75], [0.5], [-2.0]])

    np.testing.assert_allclose([x[0] for x in xs], [x1, x2, x3])


def test_fedyogi_follows_algorithm_2_by_hand_in_both_sign_branches() -> None:
    # Δ1 = 0.75: Δ² = 0.5625 > v0 = 0.25, sign -1: v1 = 0.25 + 0.25*0.5625 = 0.390625 (√ 0.625)
    #   m1 = 0.375, x1 = 0.375 / (0.625 + 0.5) = 1/3
    # Δ2 = 0.5: Δ² = 0.25 < v1, sign +1: v2 = 0.390625 - 0.0625 = 0.328125 (Adam would give
    #   0.75*0.390625 + 0.0625 = 0.35546875), m2 = 0.1875 + 0.25 = 0.4375
    xs = run(FedYogi(**HAND), [[0.75], [0.5]])

    assert xs[0][0] == pytest.approx(1 / 3)
    assert xs[1][0] == pytest.approx(1 / 3 + 0.4375 / (math.sqrt(0.328125) + 0.5))


def test_the_three_adaptive_rules_differ_on_the_same_updates() -> None:
    deltas = [[0.75], [0.5], [0.1]]

    finals = {rule: run(ServerOptimizer(rule, **HAND), deltas)[-1][0]
              for rule in (Rule.ADAGRAD, Rule.ADAM, Rule.YOGI)}

    assert len({round(v, 9) for v in finals.values()}) == 3


def test_fedavgm_adds_server_momentum_by_hand() -> None:
    # v1 = Δ1 = [1, -2]; v2 = 0.5 v1 + [1, 1] = [1.5, 0]; v3 = 0.5 v2 + 0 = [0.75, 0]
    xs = run(FedAvgM(momentum=0.5, server_lr=1.0), [[1.0, -2.0], [1.0, 1.0], [0.0, 0.0]])

    np.testing.assert_allclose(xs, [[1.0, -2.0], [2.5, -2.0], [3.25, -2.0]])


def test_fedavgm_without_momentum_is_fedavg() -> None:
    params = {"w": np.array([1.0, 2.0], np.float32)}
    result = AggregateResult(update={"w": np.array([0.5, -1.0], np.float32)}, count=2,
                             total_weight=2.0)

    new = FedAvgM(momentum=0.0, server_lr=0.5).apply(params, result)

    np.testing.assert_array_equal(new["w"], FedAvg(server_lr=0.5).apply(params, result)["w"])
    assert new["w"].dtype == np.float32


def test_the_paper_defaults() -> None:
    opt = FedAdam()

    assert (opt.beta1, opt.beta2, opt.tau, opt.eta) == (0.9, 0.99, 1e-3, 1e-2)


@pytest.mark.parametrize("kwargs", [{"eta": 0.0}, {"tau": -1.0}, {"beta1": 1.0},
                                    {"beta2": -0.1}, {"eta": math.inf}])
def test_bad_hyper_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FedAdam(**kwargs)  # type: ignore[arg-type]


def test_an_aggregate_that_does_not_match_the_model_changes_nothing() -> None:
    opt = FedAdam(**HAND)
    run(opt, [[1.0]])
    before = opt.state_arrays()

    with pytest.raises(ValueError, match="must match the model"):
        step(opt, {"w": np.zeros(2)}, [1.0])

    assert opt.state_arrays().keys() == before.keys()
    np.testing.assert_array_equal(opt.state_arrays()["server_opt.m.w"], before["server_opt.m.w"])


@pytest.mark.parametrize("rule", list(Rule))
def test_state_round_trips_through_a_checkpoint(rule: Rule) -> None:
    from fedcore.engine.snapshot import EngineSnapshot

    rng = np.random.default_rng(0)
    deltas = rng.normal(size=(6, 3)).tolist()
    straight = run(ServerOptimizer(rule, **HAND), deltas)

    first = ServerOptimizer(rule, **HAND)
    xs = run(first, deltas[:3])
    snapshot = checkpoint_from_bytes(checkpoint_to_bytes(EngineSnapshot(
        round=3, task_seq=3, params={"w": xs[-1]}, strategy_state=first.state_arrays())))
    second = ServerOptimizer(rule, **HAND)
    second.load_state_arrays(snapshot.strategy_state)
    params: Params = snapshot.params
    for delta in deltas[3:]:
        params = step(second, params, delta)

    np.testing.assert_allclose(params["w"], straight[-1], rtol=0, atol=0)


def test_a_checkpoint_of_another_strategy_is_refused() -> None:
    adam = FedAdam(**HAND)
    run(adam, [[1.0]])

    with pytest.raises(ValueError, match="another strategy"):
        FedAvgM().load_state_arrays(adam.state_arrays())


# ---------------------------------------------------------------- the engine, resumed mid-run
CLIENTS = 3


def _data(index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([5, index])
    x = rng.normal(size=(8 + 4 * index, 2))
    return x, x @ np.array([1.0, -2.0]) + index


def _app(index: int) -> FunctionalApp:
    x, y = _data(index)

    def fit(params: Params, config: TrainConfig) -> FitResult:
        w = params["w"].copy()
        for _ in range(config.local_epochs):
            w -= config.learning_rate * 2 * x.T @ (x @ w - y) / len(y)
        return FitResult(params={"w": w}, num_examples=len(y))

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        return EvalResult(loss=float(np.mean((x @ params["w"] - y) ** 2)), num_examples=len(y))

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(2)}, fit=fit, evaluate=evaluate)


def _config(rounds: int) -> EngineConfig:
    everyone = SelectionConfig(fraction=1.0, min_results=CLIENTS, min_available=CLIENTS)
    return EngineConfig(num_rounds=rounds, train=everyone, evaluate=None, seed=3)


def _drive(engine: RoundEngine, population: Population) -> None:
    InProcessDriver(engine, population, AppRunner(lambda cid: _app(population.index_of(cid)))).run()


@pytest.mark.parametrize("make", [FedYogi, FedAvgM])
def test_a_run_resumed_from_its_checkpoint_ends_where_an_uninterrupted_run_ends(
    make: object,
) -> None:
    def strategy() -> ServerOptimizer:
        inner = FedAvg(local_epochs=2, learning_rate=0.05)
        return make(inner=inner, **({"eta": 0.1} if make is FedYogi else {}))  # type: ignore[operator]

    initial = {"w": np.zeros(2)}
    population = Population(CLIENTS, seed=0, data=_data)
    straight = RoundEngine(_config(4), strategy(), initial_params=initial,
                           registry=VirtualRegistry(population))
    _drive(straight, population)

    population = Population(CLIENTS, seed=0, data=_data)
    half = RoundEngine(_config(2), strategy(), initial_params=initial,
                       registry=VirtualRegistry(population))
    _drive(half, population)
    snapshot = half.snapshot()
    assert snapshot is not None and snapshot.strategy_state
    restored = checkpoint_from_bytes(checkpoint_to_bytes(snapshot))
    population = Population(CLIENTS, seed=0, data=_data)
    resumed = RoundEngine.restore(_config(4), strategy(), restored,
                                  registry=VirtualRegistry(population))
    _drive(resumed, population)

    assert straight.params is not None and resumed.params is not None
    assert [r.status for r in resumed.records] == ["ok"] * 4
    np.testing.assert_allclose(resumed.params["w"], straight.params["w"], rtol=1e-12)
    # and the state mattered: a restart without it would have ended elsewhere
    population = Population(CLIENTS, seed=0, data=_data)
    forgetful = RoundEngine.restore(_config(4), strategy(),
                                    snapshot.__class__(round=2, task_seq=snapshot.task_seq,
                                                       params=snapshot.params,
                                                       records=snapshot.records),
                                    registry=VirtualRegistry(population))
    _drive(forgetful, population)
    assert forgetful.params is not None
    assert not np.allclose(forgetful.params["w"], straight.params["w"], rtol=1e-6)


def test_integer_and_boolean_tensors_take_the_mean_update_and_keep_no_moments() -> None:
    # a counter (int64) and a mask (bool) beside a float weight: no adaptive step for them
    params = {"w": np.zeros(2, np.float32), "steps": np.array(10, np.int64),
              "mask": np.array([True, False])}
    result = AggregateResult(update={"w": np.array([0.75, 0.75]), "steps": np.array(2.6),
                                     "mask": np.array([1.0, 0.0])}, count=2, total_weight=2.0)
    opt = FedYogi(**HAND)

    new = opt.apply(params, result)

    assert new["steps"].dtype == np.int64 and int(new["steps"]) == 13  # 10 + rint(2.6)
    np.testing.assert_array_equal(new["mask"], [False, False])  # flipped where the mean says 1
    np.testing.assert_allclose(new["w"], [1 / 3, 1 / 3], rtol=1e-6)  # Yogi's first step
    assert set(opt.state_arrays()) == {"server_opt.m.w", "server_opt.v.w"}
