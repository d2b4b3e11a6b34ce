"""`build_run`: the one place a round engine is assembled from a run plan."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import SelectionConfig
from fedcore.engine.plan import RunPlan, build_run
from fedcore.strategy import FedAvg

from .conftest import engine_config, initial_model

TWO = SelectionConfig(count=2, min_available=2)


def test_a_fresh_run_starts_from_the_initial_parameters() -> None:
    plan = RunPlan(engine=engine_config(num_rounds=2), strategy=FedAvg())

    engine = build_run(plan, initial_params=initial_model())

    assert engine.config is plan.engine and engine.strategy is plan.strategy


def test_a_resumed_run_takes_its_model_from_the_snapshot_only(make_harness) -> None:  # type: ignore[no-untyped-def]
    plan = RunPlan(engine=engine_config(num_rounds=3, train=TWO), strategy=FedAvg())
    first = make_harness(clients=2, num_rounds=3, train=TWO)
    first.play_round({"c0": (1.0, 1), "c1": (3.0, 1)})
    snap = first.engine.snapshot()
    assert snap is not None

    with pytest.raises(ValueError, match="from the snapshot"):
        build_run(plan, initial_params={"w": np.zeros(2, np.float32)}, snapshot=snap)
    resumed = build_run(plan, snapshot=snap)
    assert resumed.config is plan.engine and [r.round for r in resumed.records] == [1]
