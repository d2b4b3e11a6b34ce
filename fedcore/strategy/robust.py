"""A strategy whose round aggregate is robust to poisoned updates (`fedcore.aggregate.robust`).

Clients train as the inner strategy says (FedAvg/FedProx); the coordinator combines their
updates with the chosen robust aggregator instead of the weighted mean, and applies the result
as the inner strategy does. Wrap it in a server optimizer (`fedcore.strategy.server_opt`) to
step with FedAdam & co. on the robust aggregate. Plain rounds only (see the aggregators' module).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.aggregate.robust import CoordinateMedian, MultiKrum, NormBound, TrimmedMean
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.strategy.fedavg import FedAvg


class Defence(enum.Enum):
    """The aggregation rule."""

    MEAN = "mean"
    MEDIAN = "median"
    TRIMMED_MEAN = "trimmed_mean"
    KRUM = "krum"
    NORM_BOUND = "norm_bound"

    @property
    def needs_every_update(self) -> bool:
        """Whether the rule must see each update (impossible under secure aggregation)."""
        return self in (Defence.MEDIAN, Defence.TRIMMED_MEAN, Defence.KRUM)


@dataclass(frozen=True, slots=True, kw_only=True)
class RobustAggregation:
    """The inner strategy with its aggregator replaced by `defence`.

    Args:
        defence: the rule.
        inner: local training and `apply` (FedAvg by default).
        trim_fraction: β of the trimmed mean.
        byzantine: f, the poisoned updates Krum tolerates.
        krum_select: m, how many best-scored updates Krum averages (0: n - f).
        norm_bound: the L2 bound of norm bounding.
    """

    defence: Defence
    inner: FedAvg = field(default_factory=FedAvg)
    trim_fraction: float = 0.1
    byzantine: int = 0
    krum_select: int = 0
    norm_bound: float = 1.0

    def __post_init__(self) -> None:
        self.aggregator(1)  # checks the settings now, not in round 1

    def train_config(self, round_number: int) -> TrainConfig:
        """The inner strategy's local training settings."""
        return self.inner.train_config(round_number)

    def aggregator(self, round_number: int) -> Aggregator:
        """A fresh aggregator of the chosen rule."""
        match self.defence:
            case Defence.MEAN:
                return self.inner.aggregator(round_number)
            case Defence.MEDIAN:
                return CoordinateMedian()
            case Defence.TRIMMED_MEAN:
                return TrimmedMean(trim_fraction=self.trim_fraction)
            case Defence.KRUM:
                return MultiKrum(byzantine=self.byzantine, select=self.krum_select)
            case Defence.NORM_BOUND:
                return NormBound(self.norm_bound)
        raise AssertionError(self.defence)

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        """As the inner strategy: `params + server_lr * aggregate`."""
        return self.inner.apply(params, result)
