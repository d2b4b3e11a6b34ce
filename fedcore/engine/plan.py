"""A run's plan and the one place that assembles a round engine from it.

The coordinator (`fedcore.coordinator.process`), the simulator (`fedcore.sim.simulate`) and the demo
(`fedcore.demo.run`) all describe their run as a `RunPlan` and get their engine from
`build_run`; only what they drive the engine with (gRPC, in-process clients) differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedcore.engine.config import EngineConfig
from fedcore.engine.engine import RoundEngine
from fedcore.engine.registry import ClientRegistry
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.protocol.params import Params
from fedcore.protocol.scaffold import has_control
from fedcore.protocol.specs import ModelSpec
from fedcore.strategy.base import Strategy
from fedcore.strategy.scaffold import Scaffold, with_control_spec, with_control_variate


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """What a run does: the engine's settings and the strategy, built once from configuration.

    `initial_model`, for library users, builds the operator's initial parameters when a fresh
    run starts (not when one resumes from a snapshot)."""

    engine: EngineConfig
    strategy: Strategy
    initial_model: Callable[[], Params] | None = None


def build_run(
    plan: RunPlan,
    *,
    initial_params: Params | None = None,
    initial_from_client: bool = False,
    model_spec: ModelSpec | None = None,
    snapshot: EngineSnapshot | None = None,
    registry: ClientRegistry | None = None,
) -> RoundEngine:
    """The round engine of `plan`: fresh from the operator's initial parameters
    (`initial_params`, else `plan.initial_model()`) or, opted in with `initial_from_client`,
    from a client's; or going on from `snapshot`. `model_spec` pins the model's layout.

    Raises:
        ValueError: no initial model and no opt-in, or more than one source of the model (a
            snapshot holds the model), or a model or snapshot that does not fit the plan.
    """
    if snapshot is not None:
        if initial_params is not None or initial_from_client:
            raise ValueError("a run resumed from a snapshot takes its model from the snapshot")
        return RoundEngine.restore(plan.engine, plan.strategy, snapshot, model_spec=model_spec,
                                   registry=registry)
    if plan.initial_model is not None:
        if initial_params is not None or initial_from_client:
            raise ValueError("the plan's initial_model is the run's first model: pass no other")
        initial_params = plan.initial_model()
    if isinstance(plan.strategy, Scaffold):  # its server control variate rides in the model
        if initial_from_client:
            raise ValueError("SCAFFOLD starts from the operator's initial model (it adds its "
                             "control variates to it): set server.initial_model")
        if initial_params is not None and not has_control(initial_params):
            initial_params = with_control_variate(initial_params)
        if model_spec is not None:
            model_spec = with_control_spec(model_spec)
    return RoundEngine(plan.engine, plan.strategy, initial_params=initial_params,
                       initial_from_client=initial_from_client, model_spec=model_spec,
                       registry=registry)
