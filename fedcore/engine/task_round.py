"""The state of one open task round (who was asked, who answered, what has been folded) and
the engine's per-phase states that hold it."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from fedcore.aggregate.metrics import MetricsMean
from fedcore.engine.collect import Collector
from fedcore.engine.model import RoundModel
from fedcore.engine.records import RecordDraft
from fedcore.protocol.messages import TaskKind, TrainConfig

LEFT = "left"  # why a client counts as gone from a task it left (`TaskRound.gone`)


@dataclass(slots=True, kw_only=True)
class TaskRound:
    """One task (train, evaluate or initialize) sent to a selected set of clients; what they
    send goes to its `collector` (plain or secure: the same interface)."""

    kind: TaskKind
    number: int
    task_id: str
    selected: frozenset[str]
    target: int
    min_results: int
    opened_at: float
    deadline: float
    model: RoundModel | None
    train_config: TrainConfig
    collector: Collector
    metrics: MetricsMean = field(default_factory=MetricsMean)
    max_epsilon: float | None = None
    received: set[str] = field(default_factory=set)
    gone: dict[str, str] = field(default_factory=dict)

    def is_open_for(self, client_id: str) -> bool:
        """Selected and has neither answered nor dropped."""
        return client_id in self.selected and client_id not in self.received and (
            client_id not in self.gone
        )

    def has_work_for(self, client_id: str) -> bool:
        """Whether a poll by this client gets a task now (in secure rounds: a next step)."""
        return self.is_open_for(client_id) and self.collector.next_step(client_id) is not None

    def is_settled(self, now: float) -> bool:
        """Past the deadline, or the collector expects nothing more."""
        outstanding = len(self.selected) - len(self.received) - len(self.gone)
        return now >= self.deadline or self.collector.settled(
            received=len(self.received), outstanding=outstanding
        )

    def closed_because(self, now: float) -> str:
        """Why the task closed, as a clause for its failure's reason: its deadline passed, or
        no selected client was left to wait for (each left or declined; "" otherwise)."""
        if now >= self.deadline:
            return ": the deadline passed"
        waiting_for = len(self.selected) - len(self.received) - len(self.gone)
        if waiting_for or not self.gone:
            return ""
        whys = collections.Counter(self.gone.values())
        if set(whys) == {LEFT}:
            return ": every selected client left before the deadline"
        return (": every selected client answered or dropped out before the deadline ("
                + "; ".join(f"{count} {why}" for why, count in whys.most_common()) + ")")

    @property
    def succeeded(self) -> bool:
        """Whether the results received meet the minimum."""
        return len(self.received) >= self.min_results


@dataclass(frozen=True, slots=True)
class Waiting:
    """The engine's state between rounds (and before the first): no task is open."""


@dataclass(frozen=True, slots=True)
class Finished:
    """The engine's state once the run has done its rounds."""


@dataclass(slots=True)
class Initializing:
    """The engine's state while INITIALIZING: the task asking one client for the model."""

    task: TaskRound


@dataclass(slots=True)
class RoundOpen:
    """The engine's state while TRAINING or EVALUATING: the open task and the round's record
    in the making."""

    task: TaskRound
    draft: RecordDraft
