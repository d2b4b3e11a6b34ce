"""RobustAggregation: its aggregator is the chosen rule; training and apply are FedAvg's."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.mean import WeightedMean
from fedcore.aggregate.robust import CoordinateMedian, MultiKrum, NormBound, TrimmedMean
from fedcore.strategy import FedAvg
from fedcore.strategy.robust import Defence, RobustAggregation
from fedcore.strategy.server_opt import FedAvgM


@pytest.mark.parametrize(("defence", "kind"), [
    (Defence.MEAN, WeightedMean), (Defence.MEDIAN, CoordinateMedian),
    (Defence.TRIMMED_MEAN, TrimmedMean), (Defence.KRUM, MultiKrum), (Defence.NORM_BOUND, NormBound)])
def test_each_defence_builds_its_aggregator(defence: Defence, kind: type) -> None:
    assert isinstance(RobustAggregation(defence=defence).aggregator(1), kind)


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="trim_fraction"):
        RobustAggregation(defence=Defence.TRIMMED_MEAN, trim_fraction=0.6)
    with pytest.raises(ValueError, match="norm bound"):
        RobustAggregation(defence=Defence.NORM_BOUND, norm_bound=0.0)


def test_a_server_optimizer_steps_on_the_robust_aggregate() -> None:
    inner = RobustAggregation(defence=Defence.MEDIAN, inner=FedAvg(learning_rate=0.1))
    strategy = FedAvgM(momentum=0.5, inner=inner)
    agg = strategy.aggregator(1)
    for value in (1.0, 2.0, 1e6):
        agg.add({"w": np.array([value])}, 1.0)

    new = strategy.apply({"w": np.array([0.0])}, agg.result())

    assert strategy.train_config(1).learning_rate == 0.1
    np.testing.assert_array_equal(new["w"], [2.0])


def test_a_krum_round_with_too_few_updates_fails_cleanly_and_the_run_goes_on() -> None:
    from fedcore.client import EvalResult, FitResult, FunctionalApp, TrainConfig
    from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
    from fedcore.sim.driver import InProcessDriver
    from fedcore.sim.population import Population
    from fedcore.sim.registry import VirtualRegistry
    from fedcore.sim.runners import AppRunner

    def app(index: int) -> FunctionalApp:
        def fit(params: dict[str, np.ndarray], config: TrainConfig) -> FitResult:
            return FitResult(params={"w": params["w"] + index}, num_examples=1)

        def evaluate(params: dict[str, np.ndarray], config: TrainConfig) -> EvalResult:
            return EvalResult(loss=0.0, num_examples=1)

        return FunctionalApp(get_parameters=lambda: {"w": np.zeros(2)}, fit=fit,
                             evaluate=evaluate)

    population = Population(3, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    everyone = SelectionConfig(fraction=1.0, min_results=3, min_available=3)
    engine = RoundEngine(EngineConfig(num_rounds=2, train=everyone, evaluate=None),
                         RobustAggregation(defence=Defence.KRUM, byzantine=1),
                         initial_params={"w": np.zeros(2)},
                         registry=VirtualRegistry(population))

    InProcessDriver(engine, population,
                    AppRunner(lambda cid: app(population.index_of(cid)))).run()

    assert [r.status for r in engine.records] == ["failed", "failed"]
    assert "at least 5 updates" in engine.records[0].reason
    np.testing.assert_array_equal(engine.params["w"], [0.0, 0.0])  # type: ignore[index]
