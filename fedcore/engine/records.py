"""What the engine reports about each round."""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any


class PrivacyMechanism(enum.Enum):
    """The DP mechanisms whose ε a round reports; each value is its key in the round's metrics.

    All are cumulative over the run at their own δ: LOCAL is the largest ε any client of the
    round reported for its DP-SGD (`fedcore.dp.opacus`), USER the coordinator's DP-FedAvg
    (`fedcore.strategy.dp_fedavg`), DISTRIBUTED the secure-aggregation noise
    (`fedcore.dp.distributed_accountant`; DISTRIBUTED_APPROX when only approximated).
    """

    LOCAL = "epsilon"
    USER = "user_epsilon"
    DISTRIBUTED = "distributed_epsilon"
    DISTRIBUTED_APPROX = "distributed_epsilon_approx"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord:
    """One round of the run history.

    `loss` and `accuracy` come from the federated evaluation after the round (None when no
    evaluation ran); `train_loss` is the example-weighted mean of the clients' training losses.
    """

    round: int
    status: str
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
    status: str = "ok"
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def finish(self, now: float) -> RoundRecord:
        """The final record; evaluation's `loss`, `accuracy` and client count become fields."""
        metrics = dict(self.metrics)
        loss = metrics.pop("loss", None)
        accuracy = metrics.pop("accuracy", None)
        eval_clients = int(metrics.pop("eval_clients", 0))
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
