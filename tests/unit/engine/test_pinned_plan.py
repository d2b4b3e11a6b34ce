"""The run plan: which engine `build_run` / `build_buffered` assemble, from which model, and what
`check_buffered` refuses to run as FedBuff (each refusal by type, each acceptance by the engine
it builds)."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine.buffered import BufferedConfig, BufferedEngine
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.plan import RunPlan, build_buffered, build_run, check_buffered
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.protocol.scaffold import has_control
from fedcore.protocol.specs import spec_of
from fedcore.strategy import FedAvg
from fedcore.strategy.dp_fedavg import DPFedAvg
from fedcore.strategy.robust import Defence, RobustAggregation
from fedcore.strategy.scaffold import Scaffold, with_control_variate
from fedcore.strategy.server_opt import Rule, ServerOptimizer

from .conftest import engine_config, initial_model

SECURE = SecureAggregationConfig(max_clients=20, clip=1.0, weight_cap=10, phase_timeout_s=30.0)
DISTRIBUTED = SecureAggregationConfig(max_clients=20, distributed_dp=DistributedDPConfig(
    noise_multiplier=1.0, clip_norm=1.0))


def _dp() -> DPFedAvg:
    return DPFedAvg(noise_multiplier=1.0, clip_norm=1.0, clients_per_round=2, population=10)


def _buffered(strategy: object = None, *, k: int = 2, secagg: SecureAggregationConfig | None = None,
              initial_model_fn: object = None) -> RunPlan:
    return RunPlan(engine=engine_config(secagg=secagg), strategy=strategy or FedAvg(),  # type: ignore[arg-type]
                   buffered=BufferedConfig(buffer_size=k, concurrency=4, num_updates=3),
                   initial_model=initial_model_fn)  # type: ignore[arg-type]


def _params_equal(got: object, want: dict[str, np.ndarray]) -> None:
    assert isinstance(got, dict) and sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)


# ------------------------------------------------------------------ build_run
def test_build_run_starts_from_the_plans_initial_model() -> None:
    model = {"w": np.array([4.0, -1.0], np.float32)}
    plan = RunPlan(engine=engine_config(), strategy=FedAvg(), initial_model=lambda: model)
    engine = build_run(plan)
    _params_equal(engine.params, model)


@pytest.mark.parametrize("extra", [{"initial_params": {"w": np.zeros(2, np.float32)}},
                                   {"initial_from_client": True}])
def test_build_run_refuses_a_second_source_next_to_the_plans_model(extra: dict[str, object]) -> None:
    calls: list[int] = []

    def model() -> dict[str, np.ndarray]:
        calls.append(1)
        return initial_model()

    plan = RunPlan(engine=engine_config(), strategy=FedAvg(), initial_model=model)
    with pytest.raises(ValueError):
        build_run(plan, **extra)  # type: ignore[arg-type]
    assert calls == []  # refused before the model was built


def test_build_run_refuses_a_client_model_next_to_a_snapshot(make_harness) -> None:  # type: ignore[no-untyped-def]
    harness = make_harness(clients=2, num_rounds=3)
    harness.play_round({"c0": (1.0, 1), "c1": (3.0, 1)})
    snap = harness.engine.snapshot()
    plan = RunPlan(engine=engine_config(num_rounds=3), strategy=FedAvg())
    with pytest.raises(ValueError):
        build_run(plan, initial_from_client=True, snapshot=snap)
    with pytest.raises(ValueError):
        build_run(plan, initial_params=initial_model(), snapshot=snap)
    assert build_run(plan, snapshot=snap).round_number == 1


def test_build_run_with_scaffold_adds_the_control_variates_once() -> None:
    plan = RunPlan(engine=engine_config(), strategy=Scaffold(num_clients=2))
    plain = build_run(plan, initial_params=initial_model())
    assert plain.params is not None and has_control(plain.params)
    assert len(plain.params) == 2 * len(initial_model())
    carried = build_run(plan, initial_params=with_control_variate(initial_model()))
    assert carried.params is not None and len(carried.params) == 2 * len(initial_model())
    spec = spec_of(initial_model())
    pinned = build_run(plan, initial_params=initial_model(), model_spec=spec)
    assert pinned.params is not None and len(pinned.params) == 2 * len(initial_model())


def test_build_run_with_scaffold_refuses_a_model_from_a_client() -> None:
    plan = RunPlan(engine=engine_config(), strategy=Scaffold(num_clients=2))
    with pytest.raises(ValueError):
        build_run(plan, initial_from_client=True)
    # without SCAFFOLD the same opt-in builds an engine waiting for a client's model
    fedavg = build_run(RunPlan(engine=engine_config(), strategy=FedAvg()), initial_from_client=True)
    assert fedavg.params is None


def test_build_run_without_scaffold_keeps_the_model_as_given() -> None:
    engine = build_run(RunPlan(engine=engine_config(), strategy=FedAvg()),
                       initial_params=initial_model())
    _params_equal(engine.params, initial_model())


# ------------------------------------------------------------------ build_buffered
def test_build_buffered_builds_the_plain_or_the_secure_engine() -> None:
    plain = build_buffered(_buffered(), initial_params=initial_model())
    assert type(plain) is BufferedEngine
    _params_equal(plain.params, initial_model())
    secure = build_buffered(_buffered(secagg=SECURE), initial_params=initial_model())
    assert type(secure) is SecureBufferedEngine


def test_build_buffered_resumes_the_same_kind_of_engine_from_a_snapshot() -> None:
    for secagg, kind in ((None, BufferedEngine), (SECURE, SecureBufferedEngine)):
        plan = _buffered(secagg=secagg)
        snap = build_buffered(plan, initial_params=initial_model()).snapshot()
        resumed = build_buffered(plan, snapshot=snap)
        assert type(resumed) is kind
        _params_equal(resumed.params, initial_model())
        with pytest.raises(ValueError):
            build_buffered(plan, initial_params=initial_model(), snapshot=snap)


def test_build_buffered_takes_the_plans_model_and_refuses_a_second_or_none() -> None:
    model = {"w": np.array([7.0], np.float32)}
    built = build_buffered(_buffered(initial_model_fn=lambda: model))
    _params_equal(built.params, model)
    with pytest.raises(ValueError):
        build_buffered(_buffered(initial_model_fn=lambda: model), initial_params=initial_model())
    with pytest.raises(ValueError):
        build_buffered(_buffered())  # no model at all: FedBuff cannot take a client's


def test_build_buffered_refuses_a_plan_without_buffered_settings() -> None:
    plan = RunPlan(engine=engine_config(), strategy=FedAvg())
    with pytest.raises(ValueError):
        build_buffered(plan, initial_params=initial_model())
    with pytest.raises(ValueError):
        check_buffered(plan)


# ------------------------------------------------------------------ check_buffered
def test_check_buffered_returns_the_plans_buffered_config() -> None:
    plan = _buffered(ServerOptimizer(Rule.ADAM))
    assert check_buffered(plan) is plan.buffered


def test_secure_buffers_need_two_results_and_no_distributed_dp() -> None:
    with pytest.raises(ValueError):
        check_buffered(_buffered(k=1, secagg=SECURE))
    assert check_buffered(_buffered(k=2, secagg=SECURE)).buffer_size == 2
    assert check_buffered(_buffered(k=1)).buffer_size == 1  # plain buffers of one are fine
    with pytest.raises(ValueError):
        check_buffered(_buffered(k=2, secagg=DISTRIBUTED))


@pytest.mark.parametrize("strategy", [
    Scaffold(num_clients=2),
    RobustAggregation(defence=Defence.MEDIAN),
    RobustAggregation(defence=Defence.MEAN),  # even the mean: its aggregator is not used
    _dp(),
    ServerOptimizer(Rule.MOMENTUM, inner=RobustAggregation(defence=Defence.MEDIAN)),
    ServerOptimizer(Rule.MOMENTUM, inner=_dp()),  # DP-FedAvg one level down
])
def test_what_cannot_run_buffered_is_refused_at_any_level(strategy: object) -> None:
    with pytest.raises(ValueError):
        check_buffered(_buffered(strategy))


def test_a_server_optimizer_over_fedavg_runs_buffered() -> None:
    # a wrapper that can forward sampling (sampled_aggregator) is not itself DP-FedAvg
    strategy = ServerOptimizer(Rule.MOMENTUM, inner=FedAvg())
    plan = _buffered(strategy)
    assert check_buffered(plan) is plan.buffered
    assert type(build_buffered(plan, initial_params=initial_model())) is BufferedEngine
