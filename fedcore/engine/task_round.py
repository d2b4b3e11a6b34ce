"""The state of one open task round: who was asked, who answered, what has been folded."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedcore.aggregate.base import Aggregator
from fedcore.aggregate.metrics import MetricsMean
from fedcore.engine.model import RoundModel
from fedcore.engine.secure_round import SecureRound
from fedcore.messages import TaskKind, TrainConfig


@dataclass(slots=True, kw_only=True)
class TaskRound:
    """One task (train, evaluate or initialize) sent to a selected set of clients."""

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
    aggregator: Aggregator | None = None
    metrics: MetricsMean = field(default_factory=MetricsMean)
    secure: SecureRound | None = None
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
        if not self.is_open_for(client_id):
            return False
        return self.secure is None or self.secure.next_step(client_id) is not None

    def is_settled(self, now: float) -> bool:
        """Enough results, everyone accounted for, or past the deadline."""
        if self.secure is not None:
            return self.secure.finished or now >= self.deadline
        accounted = len(self.received) + len(self.gone)
        return len(self.received) >= self.target or accounted >= len(self.selected) or (
            now >= self.deadline
        )

    @property
    def succeeded(self) -> bool:
        """Whether the results received meet the minimum."""
        return len(self.received) >= self.min_results
