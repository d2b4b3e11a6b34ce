"""A `SampledStrategy` (DP-FedAvg) is priced at the sampling that really happened: the engine
hands it the number of clients selected (over-selection included) and how many were available,
not the q = 1 a plain aggregator would assume."""

from __future__ import annotations

import numpy as np

from fedcore.engine import SelectionConfig
from fedcore.strategy.dp_fedavg import DPFedAvg

from .conftest import Harness, engine_config, initial_model

T0 = 10_000.0


def test_a_sampled_strategy_prices_the_round_at_the_sampling_that_happened() -> None:
    strategy = DPFedAvg(noise_multiplier=1.0, clip_norm=1.0, clients_per_round=2, population=10,
                        rng=np.random.default_rng(0))
    h = Harness(engine_config(train=SelectionConfig(count=2, over_selection=0.5)),
                strategy=strategy, initial=initial_model())
    h.now = T0
    h.join(*(f"c{i}" for i in range(8)))
    tasks = h.tasks()
    assert len(tasks) == 3  # 2 wanted, half as many more asked, of 8 available
    for cid in sorted(tasks)[:2]:  # the target: the round closes
        h.submit(cid, tasks[cid])
    (record,) = h.engine.records
    assert record.metrics["user_sample_rate"] == 3 / 8
