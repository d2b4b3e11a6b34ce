"""FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020).

Clients send updates (local model minus global model); the server adds the example-weighted
mean update, scaled by `server_lr`, to the global model. FedProx differs only on the clients:
their loss gains the proximal term mu/2 * ||w - w_global||^2, which the coordinator configures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.aggregate.mean import WeightedMean
from fedcore.protocol.messages import LocalDPConfig, TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.protocol.update import apply_mean


@dataclass(frozen=True, slots=True, kw_only=True)
class FedAvg:
    """Federated averaging weighted by example counts, aggregated as a running sum."""

    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    proximal_mu: float = 0.0
    server_lr: float = 1.0
    local_dp: LocalDPConfig | None = None

    def __post_init__(self) -> None:
        if not self.server_lr > 0:
            raise ValueError(f"server_lr must be > 0, got {self.server_lr}")
        self.train_config(1)  # validates the client-side settings now, not in round 1

    def train_config(self, round_number: int) -> TrainConfig:
        """The same local settings every round."""
        return TrainConfig(
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            proximal_mu=self.proximal_mu,
            local_dp=self.local_dp,
        )

    def aggregator(self, round_number: int) -> Aggregator:
        """A streaming weighted mean."""
        return WeightedMean()

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        """`params + server_lr * mean_update`, rounded once to each tensor's own dtype
        (integers saturate, BOOL flips by weighted majority: `fedcore.protocol.update`)."""
        return {
            name: apply_mean(value, result.update[name], self.server_lr)
            for name, value in params.items()
        }


def FedProx(mu: float, **kwargs: Any) -> FedAvg:
    """FedAvg whose clients add the proximal term mu/2 * ||w - w_global||^2 to their loss."""
    if not mu > 0:
        raise ValueError(f"FedProx needs mu > 0, got {mu}; use FedAvg for mu = 0")
    return FedAvg(proximal_mu=mu, **kwargs)
