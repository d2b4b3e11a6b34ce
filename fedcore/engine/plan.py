"""A run's plan and the one place that assembles its engine: `build_run` for rounds,
`build_buffered` for asynchronous buffered aggregation (FedBuff, `RunPlan.buffered`).

The coordinator (`fedcore.coordinator.process`), the simulator (`fedcore.sim.simulate`) and the demo
(`fedcore.demo.run`) all describe their run as a `RunPlan` and get their engine from here; only
what they drive the engine with (gRPC, in-process clients) differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferedSnapshot
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.config import EngineConfig
from fedcore.engine.engine import RoundEngine
from fedcore.engine.registry import ClientRegistry
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.protocol.params import Params
from fedcore.protocol.scaffold import has_control
from fedcore.protocol.specs import ModelSpec
from fedcore.strategy.base import SampledStrategy, Strategy
from fedcore.strategy.robust import RobustAggregation
from fedcore.strategy.scaffold import Scaffold, with_control_spec, with_control_variate


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """What a run does: the engine's settings and the strategy, built once from configuration.

    `initial_model`, for library users, builds the operator's initial parameters when a fresh
    run starts (not when one resumes from a snapshot). With `buffered` set the run is FedBuff
    (`build_buffered`): of `engine` only the service's settings (client timeout, limits, payload
    size) are used."""

    engine: EngineConfig
    strategy: Strategy
    initial_model: Callable[[], Params] | None = None
    buffered: BufferedConfig | None = None


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


def build_buffered(
    plan: RunPlan,
    *,
    initial_params: Params | None = None,
    snapshot: BufferedSnapshot | None = None,
) -> BufferedEngine:
    """The FedBuff engine of `plan` (`plan.buffered` set): fresh from `initial_params` (else
    `plan.initial_model()`), or going on from `snapshot`.

    Raises:
        ValueError: `plan` is not buffered or combines FedBuff with what it cannot run
            (`check_buffered`), no initial model or more than one, or a snapshot that does
            not fit the plan.
    """
    config = check_buffered(plan)
    if snapshot is not None:
        if initial_params is not None:
            raise ValueError("a run resumed from a snapshot takes its model from the snapshot")
        if plan.engine.secagg is not None:
            return SecureBufferedEngine.restore(config, plan.strategy, snapshot,
                                                secure=plan.engine.secagg)
        return BufferedEngine.restore(config, plan.strategy, snapshot)
    if plan.initial_model is not None:
        if initial_params is not None:
            raise ValueError("the plan's initial_model is the run's first model: pass no other")
        initial_params = plan.initial_model()
    if initial_params is None:
        raise ValueError("a buffered run needs an initial model (server.initial_model, "
                         "--initial-model); it cannot take one from a client")
    if plan.engine.secagg is not None:  # each buffer one secure-aggregation group
        return SecureBufferedEngine(config, plan.strategy, initial_params, plan.engine.secagg)
    return BufferedEngine(config, plan.strategy, initial_params)


def check_buffered(plan: RunPlan) -> BufferedConfig:
    """`plan.buffered`, once the plan is known to run buffered: the engine folds each result
    into its own staleness-weighted mean and steps through `strategy.apply`, so a strategy
    whose aggregation is more than a mean is refused. With [secagg] each buffer is one
    secure-aggregation group (`fedcore.engine.buffered_secure`), without distributed DP.

    Raises:
        ValueError: what cannot run buffered, and what to change.
    """
    if plan.buffered is None:
        raise ValueError("the plan has no buffered settings (RunPlan.buffered, [buffered])")
    secure = plan.engine.secagg
    if secure is not None and secure.distributed_dp is not None:
        raise ValueError("[buffered] with [secagg.dp]: distributed DP's accounting is per "
                         "synchronous round; remove [secagg.dp] or [buffered]")
    if secure is not None and plan.buffered.buffer_size < 2:
        raise ValueError("[buffered] with [secagg] needs buffer_size >= 2: the secure sum of "
                         "one update is that update")
    level: object = plan.strategy
    while level is not None:
        inner = getattr(level, "inner", None)
        refusal = _buffered_refusal(level, wrapper=inner is not None)
        if refusal:
            raise ValueError(refusal)
        level = inner
    return plan.buffered


def _buffered_refusal(strategy: object, *, wrapper: bool) -> str:
    """Why `strategy` (one level of a wrapped strategy) cannot run buffered ("" if it can)."""
    if isinstance(strategy, Scaffold):
        return ("[buffered] with strategy.name = 'scaffold': SCAFFOLD's control variates assume "
                "synchronous rounds; use another strategy (fedavg, fedprox or a server "
                "optimizer) or remove [buffered]")
    if isinstance(strategy, RobustAggregation):
        return (f"[buffered] with strategy.robust.aggregator = {strategy.defence.value!r}: a "
                "buffered run combines results with its staleness-weighted mean; set "
                "aggregator = 'mean' or remove [buffered]")
    if not wrapper and isinstance(strategy, SampledStrategy):
        return ("[buffered] with [privacy.user]: DP-FedAvg clips and noises in its round "
                "aggregator, which a buffered run does not use; remove one of the two tables")
    return ""
