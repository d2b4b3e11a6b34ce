"""A `SampledStrategy` (e.g. DP-FedAvg) is priced at the sampling that really happened: the
engine asks it, not the plain `aggregator`, for each training round's aggregator, with the
number of clients selected (over-selection included) and how many were available then."""

from __future__ import annotations

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.engine import SelectionConfig
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.strategy import FedAvg
from fedcore.strategy.base import SampledStrategy, Sampling

from .conftest import Harness, engine_config, initial_model

T0 = 10_000.0


class _Recording:
    """FedAvg that notes how the engine says each round was sampled."""

    def __init__(self) -> None:
        self._fedavg = FedAvg()
        self.sampled: list[tuple[int, Sampling]] = []
        self.plain: list[int] = []

    def train_config(self, round_number: int) -> TrainConfig:
        return self._fedavg.train_config(round_number)

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        return self._fedavg.apply(params, result)

    def sampled_aggregator(self, round_number: int, sampling: Sampling) -> Aggregator:
        self.sampled.append((round_number, sampling))
        return self._fedavg.aggregator(round_number)

    def aggregator(self, round_number: int) -> Aggregator:
        self.plain.append(round_number)
        return self._fedavg.aggregator(round_number)


def test_a_sampled_strategy_is_told_the_selection_and_availability_of_each_round() -> None:
    strategy = _Recording()
    assert isinstance(strategy, SampledStrategy)
    h = Harness(engine_config(num_rounds=2, train=SelectionConfig(count=2, over_selection=0.5)),
                strategy=strategy, initial=initial_model())
    h.now = T0
    h.join(*(f"c{i}" for i in range(8)))
    for _ in range(2):
        tasks = h.tasks()
        assert len(tasks) == 3  # 2 wanted, half as many more asked, of 8 available
        for cid in sorted(tasks)[:2]:  # the target: the round closes
            h.submit(cid, tasks[cid])
    assert strategy.sampled == [(1, Sampling(selected=3, available=8)),
                                (2, Sampling(selected=3, available=8))]
    assert strategy.plain == []
    assert [r.results_received for r in h.engine.records] == [2, 2]
