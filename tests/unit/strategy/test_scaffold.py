"""SCAFFOLD: the client's and the server's update formulas on hand-computed values, the
control variate's storage, and the drift it removes on a heterogeneous problem in simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.aggregate.base import AggregateResult
from fedcore.client.app import DeclineTask, FitResult, FunctionalApp
from fedcore.client.scaffold import BlobVariates, corrected_fit, variate_spec
from fedcore.client.state import StateDir
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import AppRunner
from fedcore.sim.scaffold import ScaffoldHandlers, StoredVariates
from fedcore.strategy import FedAvg
from fedcore.strategy.base import Strategy
from fedcore.strategy.scaffold import Scaffold, with_control_variate

STEPS_PER_EPOCH = 5


class QuadraticApp:
    """f(y) = h/2 ||y - a||^2 by gradient descent, `STEPS_PER_EPOCH` steps per epoch."""

    def __init__(self, h: float, a: float) -> None:
        self.h, self.a = h, a

    def get_parameters(self) -> Params:
        return {"w": np.zeros(2, np.float64)}

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        return self.fit_corrected(params, config, {"w": np.zeros(2)})

    def fit_corrected(self, params: Params, config: TrainConfig,
                      correction: dict[str, np.ndarray]) -> FitResult:
        y = np.array(params["w"], np.float64)
        steps = config.local_epochs * STEPS_PER_EPOCH
        for _ in range(steps):
            y = y - config.learning_rate * (self.h * (y - self.a) + correction["w"])
        return FitResult(params={"w": y}, num_examples=10, local_steps=steps)

    def evaluate(self, params: Params, config: TrainConfig) -> object:
        raise NotImplementedError


# -------------------------------------------------------------- formulas, hand-computed
class _Square:
    """f(y) = y^2 / 2 (gradient y), two steps."""

    def fit_corrected(self, params: Params, config: TrainConfig,
                      correction: dict[str, np.ndarray]) -> FitResult:
        y = np.array(params["w"], np.float64)
        for _ in range(2):
            y = y - config.learning_rate * (y + correction["w"])
        return FitResult(params={"w": y}, num_examples=1, local_steps=2)

    def get_parameters(self) -> Params:
        return {}

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        raise AssertionError("SCAFFOLD must call fit_corrected")

    def evaluate(self, params: Params, config: TrainConfig) -> object:
        raise NotImplementedError


def test_client_step_and_control_variate_match_hand_computation() -> None:
    # x = 1, c = 0.5, c_i = 0.2, lr = 0.1, K = 2:
    #   y1 = 1 - 0.1 (1 - 0.2 + 0.5) = 0.87;  y2 = 0.87 - 0.1 (0.87 + 0.3) = 0.753
    #   c_i+ = c_i - c + (x - y)/(K lr) = 0.2 - 0.5 + 0.247 / 0.2 = 0.935 (the mean gradient)
    store = BlobVariates()
    store.save({"w": np.array([0.2])})
    params = {"w": np.array([1.0]), "scaffold.c/w": np.array([0.5])}
    out = corrected_fit(_Square(), params, TrainConfig(learning_rate=0.1), store)  # type: ignore[arg-type]
    np.testing.assert_allclose(out.fit.params["w"], [0.753])
    np.testing.assert_allclose(out.control_delta["scaffold.c/w"], [0.935 - 0.2])
    kept = store.load(variate_spec({"w": np.zeros(1)}))
    assert kept is not None
    np.testing.assert_allclose(kept["w"], [0.935])


def test_server_step_matches_hand_computation() -> None:
    # x = 1 + 1 * (-0.2) = 0.8;  c = 0.5 + (2 / 8) * 0.4 = 0.6
    strategy = Scaffold(num_clients=8, server_lr=1.0)
    params = {"w": np.array([1.0], np.float32), "scaffold.c/w": np.array([0.5], np.float32)}
    result = AggregateResult(update={"w": np.array([-0.2]), "scaffold.c/w": np.array([0.4])},
                             count=2, total_weight=2.0)
    new = strategy.apply(params, result)
    np.testing.assert_allclose(new["w"], [0.8], rtol=1e-6)
    np.testing.assert_allclose(new["scaffold.c/w"], [0.6], rtol=1e-6)
    assert new["w"].dtype == np.float32


def test_server_refuses_a_model_without_control_variates() -> None:
    result = AggregateResult(update={"w": np.zeros(1)}, count=1, total_weight=1.0)
    with pytest.raises(ValueError, match="with_control_variate"):
        Scaffold(num_clients=2).apply({"w": np.zeros(1)}, result)


def test_with_control_variate_adds_zeros_for_float_tensors_only() -> None:
    model = with_control_variate({"w": np.ones((2, 3), np.float32), "n": np.ones(2, np.int64)})
    assert set(model) == {"w", "n", "scaffold.c/w"}
    assert model["scaffold.c/w"].dtype == np.float32 and not model["scaffold.c/w"].any()
    with pytest.raises(ValueError, match="floating-point"):
        with_control_variate({"n": np.ones(2, np.int64)}, names=["n"])
    with pytest.raises(ValueError, match="already"):
        with_control_variate(model)


def test_an_app_without_corrected_steps_declines_for_good() -> None:
    app = FunctionalApp(get_parameters=dict, fit=lambda p, c: FitResult(params=p, num_examples=1))
    with pytest.raises(DeclineTask) as refusal:
        corrected_fit(app, {"w": np.zeros(1), "scaffold.c/w": np.zeros(1)}, TrainConfig(),
                      BlobVariates())
    assert refusal.value.permanent


def test_control_variate_survives_in_the_state_directory(tmp_path: Path) -> None:
    spec = variate_spec({"w": np.zeros((2, 2), np.float32)})
    with StateDir.open(tmp_path / "client") as state:
        BlobVariates(state).save({"w": np.arange(4.0).reshape(2, 2)})
    with StateDir.open(tmp_path / "client") as state:
        again = BlobVariates(state).load(spec)
        assert again is not None
        np.testing.assert_array_equal(again["w"], np.arange(4.0).reshape(2, 2))
        # another model's layout is not mistaken for this one's
        assert BlobVariates(state).load(variate_spec({"w": np.zeros(3)})) is None


# -------------------------------------------------------------- client drift, simulated
H = (1.0, 10.0)  # curvatures
A = (0.0, 10.0)  # the clients' own optima
OPTIMUM = sum(h * a for h, a in zip(H, A)) / sum(H)  # of the average objective: 100 / 11


def _simulate(strategy: Strategy, initial: dict[str, np.ndarray], rounds: int
              ) -> tuple[dict[str, np.ndarray], Population]:
    population = Population(2, seed=0, data=lambda i: (np.zeros((1, 1)), np.zeros(1)))
    everyone = SelectionConfig(fraction=1.0, min_results=2, min_available=2)
    config = EngineConfig(num_rounds=rounds, train=everyone, evaluate=None,
                          round_timeout_s=60.0, seed=3)
    engine = RoundEngine(config, strategy, initial_params=initial,
                         registry=VirtualRegistry(population))
    apps = [QuadraticApp(h, a) for h, a in zip(H, A)]
    runner = AppRunner(lambda cid: apps[population.index_of(cid)])
    result = InProcessDriver(engine, population, runner,
                             handler=ScaffoldHandlers(population)).run()
    return result.params, population


def test_scaffold_removes_the_client_drift_fedavg_keeps() -> None:
    # Two clients with curvatures 1 and 10 and 10 local steps of lr 0.05: FedAvg's fixed point
    # is (0.401 * 0 + 0.999 * 10) / 1.4 ~ 7.1, not the optimum 9.09; SCAFFOLD's is the optimum.
    initial = {"w": np.zeros(2, np.float64)}
    local = {"local_epochs": 2, "learning_rate": 0.05}
    fedavg, _ = _simulate(FedAvg(**local), initial, rounds=30)  # type: ignore[arg-type]
    scaffold, population = _simulate(Scaffold(num_clients=2, **local),  # type: ignore[arg-type]
                                     with_control_variate(initial), rounds=30)
    fedavg_gap = float(np.abs(fedavg["w"] - OPTIMUM).max())
    scaffold_gap = float(np.abs(scaffold["w"] - OPTIMUM).max())
    assert fedavg_gap > 1.5
    assert scaffold_gap < 1e-3 * fedavg_gap
    # each client's variate converged to its own gradient at the optimum, c to their mean (0)
    assert len(population.control_variates) == 2
    for index, (h, a) in enumerate(zip(H, A)):
        spec = variate_spec({"w": np.zeros(2)})
        c_i = StoredVariates(population.control_variates, index).load(spec)
        assert c_i is not None
        np.testing.assert_allclose(c_i["w"], h * (OPTIMUM - a), atol=1e-2)
    np.testing.assert_allclose(scaffold["scaffold.c/w"], 0.0, atol=1e-2)


def test_torch_app_adds_the_correction_to_every_step() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from fedcore.client.torch_app import TorchApp

    torch.manual_seed(0)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)  # one batch: one step per epoch
    app = TorchApp(torch.nn.Linear(3, 2), train_loader=loader)
    start = app.get_parameters()
    config = TrainConfig(learning_rate=0.1)
    plain = app.fit(start, config)
    correction = {n: np.full(v.shape, 0.5) for n, v in start.items()}
    corrected = app.fit_corrected(start, config, correction)
    assert corrected.local_steps == plain.local_steps == 1
    for name in start:  # one step: y = x - lr (g + d) = plain - lr d
        np.testing.assert_allclose(corrected.params[name], plain.params[name] - 0.05, atol=1e-6)
    two = app.fit_corrected(start, TrainConfig(learning_rate=0.1, local_epochs=2), correction)
    assert two.local_steps == 2


def test_the_task_handler_hides_the_variates_from_the_app_and_sends_their_change() -> None:
    from fedcore.client.app import EvalResult
    from fedcore.client.handler import TaskHandler
    from fedcore.protocol.messages import Task, TaskKind
    from fedcore.protocol.specs import spec_of

    model = with_control_variate({"w": np.zeros(2)})
    model["scaffold.c/w"] = np.array([0.5, -0.5])
    seen: list[set[str]] = []

    class App(QuadraticApp):
        def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
            seen.append(set(params))
            return EvalResult(loss=1.0, num_examples=3)

    handler = TaskHandler(App(1.0, 2.0), "c1")
    for kind in (TaskKind.TRAIN, TaskKind.EVALUATE):
        task = Task(round=1, task_id=f"t-{kind.value}", kind=kind, model_spec=spec_of(model),
                    train=TrainConfig(learning_rate=0.1))
        handler.check_model(task)  # the app's own layout has no variates: no mismatch
        result = handler.handle(task, model)
        if kind is TaskKind.TRAIN:
            assert set(result.tensors) == {"w", "scaffold.c/w"}
            assert result.header.spec == spec_of(model)
            assert np.abs(result.tensors["scaffold.c/w"]).max() > 0
    assert seen == [{"w"}]


# -------------------------------------------------------------- configuration
def _sim_config(**overrides: object) -> object:
    from fedcore.sim.config import load_simulation_config

    return load_simulation_config(None, {
        "simulation.clients": 6, "simulation.model": "logreg", "simulation.seed": 0,
        "data.dataset": "digits", "data.partition": "dirichlet", "data.dirichlet_alpha": 0.3,
        "rounds.num_rounds": 2, "rounds.clients_per_round": 3, "rounds.min_results": 3,
        "rounds.min_available": 3, "strategy.name": "scaffold", "strategy.local_epochs": 1,
        "strategy.batch_size": 16, "strategy.learning_rate": 0.1, **overrides})


@pytest.mark.parametrize("compression", [False, True])
def test_fedcore_simulate_runs_scaffold_from_its_configuration(compression: bool) -> None:
    from fedcore.sim.simulate import run

    extra = {"compression.enabled": True, "compression.kind": "quantize",
             "compression.bits": 8} if compression else {}
    result = run(_sim_config(**extra), write=False)  # type: ignore[arg-type]
    assert [r.status for r in result.records] == ["ok", "ok"]
    control = [k for k in result.params if k.startswith("scaffold.c/")]
    assert control and max(float(np.abs(result.params[k]).max()) for k in control) > 0


def test_scaffold_configuration_refuses_what_it_cannot_do() -> None:
    from fedcore.config import ConfigError, load_config, plan_run
    from fedcore.engine.plan import build_run
    from fedcore.protocol.specs import spec_of

    with pytest.raises(ConfigError, match="aggregator"):
        plan_run(_sim_config(**{"strategy.robust.aggregator": "median"}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_clients"):
        load_config(None, {"strategy.name": "scaffold"})
    plan = load_config(None, {"strategy.name": "scaffold", "strategy.num_clients": 40}).run
    assert isinstance(plan.strategy, Scaffold) and plan.strategy.num_clients == 40
    with pytest.raises(ValueError, match="initial model"):
        build_run(plan, initial_from_client=True)
    model = {"w": np.zeros(3, np.float32), "n": np.zeros(1, np.int64)}
    engine = build_run(plan, initial_params=model, model_spec=spec_of(model))
    assert engine.params is not None and set(engine.params) == {"w", "n", "scaffold.c/w"}
