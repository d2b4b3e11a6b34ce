"""The aggregator interface every strategy and wrapper speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fedcore.protocol.params import Array, Metrics


@dataclass(frozen=True, slots=True, kw_only=True)
class AggregateResult:
    """What an aggregator produces at the end of a round.

    `update` is the combined model update (e.g. the weighted mean of the clients' deltas);
    `measurements` are scalars worth recording (clip rates, noise scale, ...);
    `count` is how many client updates were folded in, `total_weight` their summed weight.
    """

    update: dict[str, Array]
    count: int
    total_weight: float
    measurements: Metrics = field(default_factory=dict)


class Aggregator(Protocol):
    """Folds client updates into a running state; never holds more than O(model)."""

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Fold one client's update. The aggregator may modify `update` in place."""
        ...

    def result(self) -> AggregateResult:
        """The combined update. Raises `ValueError` when nothing was added."""
        ...
