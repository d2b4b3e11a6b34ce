"""The engine's state at a round boundary, as plain data: what a checkpoint holds.

The engine hands out and takes back an `EngineSnapshot`; a driver decides where it is stored
(see `fedcore.engine.checkpoint`). Connected clients are not part of it: after a restart they
are unknown, get NOT_FOUND on their next call, and join again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fedcore.dp.distributed_accountant import DistributedStep
from fedcore.engine.records import RoundRecord
from fedcore.protocol.params import Array


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineSnapshot:
    """Everything needed to go on after round `round` as if the run had never stopped.

    Args:
        round: completed training rounds.
        task_seq: task rounds opened so far (it seeds client selection).
        params: the global model after round `round`.
        records: the history of the completed rounds.
        strategy_state: a stateful strategy's tensors (e.g. server-optimizer moments).
        distributed_dp: every distributed-DP round so far with the setting it ran at, so a
            resumed run goes on pricing from them instead of re-pricing them.
    """

    round: int
    task_seq: int
    params: dict[str, Array]
    records: tuple[RoundRecord, ...] = ()
    strategy_state: dict[str, Array] = field(default_factory=dict)
    distributed_dp: tuple[DistributedStep, ...] = ()

    def __post_init__(self) -> None:
        if self.round < 0 or self.task_seq < 0:
            raise ValueError(f"round and task_seq must be >= 0, got {self.round}, {self.task_seq}")
        if not self.params:
            raise ValueError("a snapshot needs the global model")
