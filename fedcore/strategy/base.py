"""The strategy interface: configure a round, aggregate it, apply the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Sampling:
    """How a training round's clients were drawn: `selected` uniformly among `available`.

    `selected` counts every client asked to train, over-selection included (any of them may be
    among the results that count); `available` is how many could have been selected then.
    """

    selected: int
    available: int

    def __post_init__(self) -> None:
        if not 1 <= self.selected <= self.available:
            raise ValueError(
                f"selected must be in [1, available={self.available}], got {self.selected}: "
                "a round cannot select more clients than are available"
            )


@runtime_checkable
class SampledStrategy(Protocol):
    """A strategy whose privacy depends on how each round's clients were sampled (optional).

    The round engine calls `sampled_aggregator` instead of `aggregator` for such strategies,
    with the sampling that really happened.
    """

    def sampled_aggregator(self, round_number: int, sampling: Sampling) -> Aggregator:
        """A fresh aggregator for a round whose clients were drawn as `sampling` says."""
        ...


@runtime_checkable
class StatefulStrategy(Protocol):
    """A strategy with state that must survive a restart (optional; FedAvg has none)."""

    def state_arrays(self) -> dict[str, Array]:
        """The strategy's state as named tensors."""
        ...

    def load_state_arrays(self, state: dict[str, Array]) -> None:
        """Take back what `state_arrays` returned."""
        ...
