"""The strategy interface: configure a round, aggregate it, apply the result."""

from __future__ import annotations

from typing import Protocol

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.messages import TrainConfig
from fedcore.params import Array, Params


class Strategy(Protocol):
    """A federated algorithm as three small, pure steps. Implementations never mutate inputs."""

    def train_config(self, round_number: int) -> TrainConfig:
        """What clients are asked to do locally in this round."""
        ...

    def aggregator(self, round_number: int) -> Aggregator:
        """A fresh streaming aggregator for this round's client updates."""
        ...

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        """The next global model from the current one and the round's aggregate."""
        ...
