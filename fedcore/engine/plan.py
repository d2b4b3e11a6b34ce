"""A run's plan and the one place that assembles a round engine from it.

The coordinator (`fedcore.coordinator.process`), the simulator (`fedcore.sim.simulate`) and the demo
(`fedcore.demo.run`) all describe their run as a `RunPlan` and get their engine from
`build_run`; only what they drive the engine with (gRPC, in-process clients) differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.engine.config import EngineConfig
from fedcore.engine.engine import RoundEngine
from fedcore.engine.registry import ClientRegistry
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.protocol.params import Params
from fedcore.strategy.base import Strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """What a run does: the engine's settings and the strategy, built once from configuration."""

    engine: EngineConfig
    strategy: Strategy


def build_run(
    plan: RunPlan,
    *,
    initial_params: Params | None = None,
    snapshot: EngineSnapshot | None = None,
    registry: ClientRegistry | None = None,
) -> RoundEngine:
    """The round engine of `plan`: fresh from `initial_params`, or going on from `snapshot`.

    Raises:
        ValueError: both `initial_params` and `snapshot` are given (a snapshot holds the model),
            or the snapshot does not fit the plan.
    """
    if snapshot is None:
        return RoundEngine(plan.engine, plan.strategy, initial_params=initial_params,
                           registry=registry)
    if initial_params is not None:
        raise ValueError("a run resumed from a snapshot takes its model from the snapshot")
    return RoundEngine.restore(plan.engine, plan.strategy, snapshot, registry=registry)
