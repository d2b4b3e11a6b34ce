"""What the engine reports about each round."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from fedcore.protocol.metric_keys import Metric


class PrivacyMechanism(enum.Enum):
    """The DP mechanisms whose ε a round reports; each value is its key in the round's metrics.

    All are cumulative over the run at their own δ: LOCAL is the largest ε any client of the
    round reported for its DP-SGD (`fedcore.dp.opacus`), USER the coordinator's DP-FedAvg
    (`fedcore.strategy.dp_fedavg`), DISTRIBUTED the secure-aggregation noise
    (`fedcore.dp.distributed_accountant`; DISTRIBUTED_APPROX when only approximated).
    """

    LOCAL = Metric.EPSILON.value
    USER = "user_epsilon"
    DISTRIBUTED = "distributed_epsilon"
    DISTRIBUTED_APPROX = "distributed_epsilon_approx"


class RoundStatus(enum.StrEnum):
    """How a round ended. A string enum: it compares, stores and prints as its value."""

    OK = "ok"
    """The round aggregated and updated the model (its evaluation may have been skipped)."""
    FAILED = "failed"
    """The round changed nothing; `RoundRecord.reason` says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord:
    """One round of the run history.

    `loss` and `accuracy` come from the federated evaluation after the round (None when no
    evaluation ran); `train_loss` is the example-weighted mean of the clients' training losses.
    """

    round: int
    status: RoundStatus
    clients_selected: int
    results_received: int
    train_loss: float | None
    loss: float | None
    accuracy: float | None
    eval_clients: int
    duration_s: float
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def epsilons(self) -> dict[PrivacyMechanism, float]:
        """ε spent so far by each mechanism this round reports (none without DP)."""
        return {m: self.metrics[m.value] for m in PrivacyMechanism if m.value in self.metrics}

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready mapping; extra metrics appear as top-level keys."""
        row = asdict(self)
        row["status"] = str(self.status)
        extra = row.pop("metrics")
        row.update({k: v for k, v in extra.items() if k not in row})
        return row


@dataclass(slots=True, kw_only=True)
class RecordDraft:
    """A round's record while the round is still in progress (training, then evaluation)."""

    round: int
    opened_at: float
    clients_selected: int = 0
    results_received: int = 0
    train_loss: float | None = None
    loss: float | None = None
    accuracy: float | None = None
    eval_clients: int = 0
    status: RoundStatus = RoundStatus.OK
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def evaluated(self, metrics: dict[str, float], clients: int) -> None:
        """Take a federated evaluation's metrics: loss and accuracy become fields."""
        rest = dict(metrics)
        self.loss = rest.pop(Metric.LOSS, None)
        self.accuracy = rest.pop(Metric.ACCURACY, None)
        self.eval_clients = clients
        self.metrics.update(rest)

    def finish(self, now: float) -> RoundRecord:
        """The final record; non-finite extra metrics are dropped."""
        metrics = self.metrics
        loss, accuracy, eval_clients = self.loss, self.accuracy, self.eval_clients
        return RoundRecord(
            round=self.round,
            status=self.status,
            clients_selected=self.clients_selected,
            results_received=self.results_received,
            train_loss=self.train_loss,
            loss=loss,
            accuracy=accuracy,
            eval_clients=eval_clients,
            duration_s=now - self.opened_at,
            reason=self.reason,
            metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
        )
