"""Updates at the edge of float range cannot corrupt the model: a round whose mean, or whose new
model, is not finite fails and leaves the model as it was (clients control these values)."""

from __future__ import annotations

import numpy as np

from .conftest import Harness, engine_config


def _harness(initial: dict[str, np.ndarray]) -> Harness:
    return Harness(engine_config(num_rounds=2), initial=initial, clients=2)


def test_a_new_model_beyond_the_dtype_range_fails_the_round_and_changes_nothing() -> None:
    h = _harness({"w": np.full(3, 2e38, np.float32)})
    before = h.params_bytes()

    h.play_round({"c0": (3e38, 1), "c1": (3e38, 1)})  # each finite; 2e38 + 3e38 is not, in f32
    h.advance(0.0)

    record = h.engine.records[-1]
    assert record.status == "failed"
    assert "not finite" in record.reason
    assert h.params_bytes() == before
    h.play_round({"c0": (1e37, 1), "c1": (1e37, 1)})  # the run goes on: the next round counts
    h.advance(0.0)
    assert h.engine.records[-1].status == "ok"
    assert h.engine.params is not None and float(h.engine.params["w"][0]) > 2.05e38


def test_a_sum_that_overflows_float64_fails_the_round_and_changes_nothing() -> None:
    # three small terms put element 0 in the exact spill; two huge ones then overflow float64
    h = Harness(engine_config(num_rounds=2), initial={"w": np.zeros(5000, np.float64)},
                clients=5)
    before = h.params_bytes()
    updates = [np.zeros(5000, np.float64) for _ in range(3)] + [np.full(5000, 1e308)] * 2
    for update, v0 in zip(updates, (1.0, 2.0 ** -60, 2.0 ** -200), strict=False):
        update[0] = v0

    tasks = h.tasks()
    for cid, update in zip(sorted(tasks), updates, strict=True):
        h.submit(cid, tasks[cid], {"w": update}, num_examples=1)
    h.advance(0.0)

    record = h.engine.records[-1]
    assert record.status == "failed"
    assert "not finite" in record.reason
    assert h.params_bytes() == before
