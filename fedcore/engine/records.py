"""What the engine reports about each round."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        """A flat JSON-ready mapping; extra metrics appear as top-level keys."""
        row = asdict(self)
        extra = row.pop("metrics")
        row.update({k: v for k, v in extra.items() if k not in row})
        return row
