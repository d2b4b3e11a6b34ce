"""SCAFFOLD in the simulator's own kernels: the sequential kernel adds the correction to every
step, and a `TorchRunner` run keeps each client's control variate in the population."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedcore.client.handler import TaskHandler
from fedcore.client.scaffold import variate_spec
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.messages import TrainConfig
from fedcore.secagg.config import Mode
from fedcore.sim.backends.sequential import TrainJob, train_sequential
from fedcore.sim.backends.vmap import train_vectorised
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.sim.scaffold import StoredVariates
from fedcore.strategy.scaffold import Scaffold, with_control_variate


def _data(index: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([9, index])
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int64) + index) % 3  # label skew between clients
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def test_the_sequential_kernel_adds_the_correction_to_each_step() -> None:
    model = _model()
    start = {k: v.detach().numpy().copy() for k, v in model.named_parameters()}
    one_step = TrainConfig(local_epochs=1, batch_size=12, learning_rate=0.1)
    d = {n: np.full(v.shape, 0.5) for n, v in start.items()}

    def job(corrections: list[dict[str, np.ndarray]] | None) -> TrainJob:
        return TrainJob(model=model, global_params=start, clients=[_data(0)], seeds=[1],
                        settings=one_step, corrections=corrections)

    plain = next(train_sequential(job(None)))
    corrected = next(train_sequential(job([d])))
    assert plain.steps == corrected.steps == 1
    for name in start:  # y = x - lr (g + d): the plain update minus lr d
        np.testing.assert_allclose(corrected.update[name], plain.update[name] - 0.05, atol=1e-6)
    with pytest.raises(ValueError, match="sequential"):
        next(train_vectorised(job([d])))


@pytest.mark.parametrize("plain_handlers", [False, True])
def test_a_torch_runner_scaffold_run_keeps_each_clients_variate(plain_handlers: bool) -> None:
    # plain TaskHandlers (as a custom handler factory builds them) find c_i through the app
    population = Population(4, seed=0, data=_data)
    model = _model()
    initial = with_control_variate({k: v.detach().numpy().copy()
                                    for k, v in model.named_parameters()})
    everyone = SelectionConfig(fraction=1.0, min_results=4, min_available=4)
    config = EngineConfig(num_rounds=3, train=everyone, evaluate=everyone,
                          round_timeout_s=60.0, seed=1)
    engine = RoundEngine(config, Scaffold(num_clients=4, local_epochs=2, batch_size=4,
                                          learning_rate=0.1),
                         initial_params=initial, registry=VirtualRegistry(population))
    handler = {"handler": TaskHandler} if plain_handlers else {}
    result = InProcessDriver(engine, population, TorchRunner(model, population),
                             **handler).run()  # type: ignore[arg-type]
    assert [r.status for r in result.records] == ["ok"] * 3
    assert all(r.accuracy is not None for r in result.records)  # evaluation skips c
    assert sorted(population.control_variates) == [0, 1, 2, 3]
    snapshot = engine.snapshot()  # c is checkpointed with the model, so --resume keeps it
    assert snapshot is not None
    np.testing.assert_array_equal(snapshot.params["scaffold.c/weight"],
                                  result.params["scaffold.c/weight"])
    spec = variate_spec({k: v for k, v in initial.items() if not k.startswith("scaffold.")})
    variates = [StoredVariates(population.control_variates, i).load(spec) for i in range(4)]
    assert all(v is not None for v in variates)
    # all four trained every round, so c is the mean of their c_i (equal-sized clients)
    for name in ("weight", "bias"):
        mean = np.mean([v[name] for v in variates if v is not None], axis=0)
        np.testing.assert_allclose(result.params[f"scaffold.c/{name}"], mean, atol=1e-5)
        assert np.abs(mean).max() > 1e-3


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SECAGG_PLUS])
def test_secure_scaffold_rounds_give_the_plain_model_up_to_quantisation(mode: Mode) -> None:
    # the control-variate changes are masked and summed with the updates, in one vector
    def run(secagg: SecureAggregationConfig | None) -> dict[str, np.ndarray]:
        population = Population(6, seed=0, data=_data)
        model = _model()
        initial = with_control_variate({k: v.detach().numpy().copy()
                                        for k, v in model.named_parameters()})
        everyone = SelectionConfig(count=6, min_results=6, min_available=6)
        config = EngineConfig(num_rounds=2, train=everyone, evaluate=None,
                              round_timeout_s=60.0, seed=1, secagg=secagg)
        engine = RoundEngine(config, Scaffold(num_clients=6, local_epochs=2, batch_size=4,
                                              learning_rate=0.1),
                             initial_params=initial, registry=VirtualRegistry(population))
        return InProcessDriver(engine, population, TorchRunner(model, population)).run().params

    plain = run(None)
    secure = run(SecureAggregationConfig(mode=mode, max_clients=50, clip=8.0, weight_cap=12))
    assert np.abs(plain["scaffold.c/weight"]).max() > 1e-2
    for name, value in plain.items():
        np.testing.assert_allclose(secure[name], value, atol=1e-5)
