"""Plain and secure rounds read an integer update alike (docs/protocol.md 5.3 and 8.9): a UINT8
model at 200 whose clients move by -3 and 0 ends at 198 either way, not at a wrapped value."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp
from fedcore.client.handler import TaskHandler
from fedcore.engine import EngineConfig, Phase, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.messages import Task, TaskKind
from fedcore.strategy import FedAvg

CHANGE = {"c0": -3, "c1": 0, "c2": -3}  # example-weighted (1, 1, 1): mean -2
GLOBAL = 200


def _engine(secure: bool) -> RoundEngine:
    secagg = (SecureAggregationConfig(max_clients=10, clip=8.0, weight_cap=1,
                                      phase_timeout_s=30.0) if secure else None)
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=600.0, client_timeout_s=1000.0,
                     train=SelectionConfig(fraction=1.0, min_available=3, min_results=3),
                     secagg=secagg),
        FedAvg(), initial_params={"w": np.full(4, GLOBAL, np.uint8)},
    )
    for cid in CHANGE:
        engine.join(cid, now=0.0)
    return engine


def _handler(cid: str) -> TaskHandler:
    def fit(params, config):  # type: ignore[no-untyped-def]
        local = (params["w"].astype(np.int64) + CHANGE[cid]).astype(np.uint8)
        return FitResult(params={"w": local}, num_examples=1)

    app = FunctionalApp(get_parameters=lambda: {"w": np.full(4, GLOBAL, np.uint8)}, fit=fit,
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    return TaskHandler(app, cid)


def _play(engine: RoundEngine) -> np.ndarray:
    handlers = {cid: _handler(cid) for cid in CHANGE}
    now = 0.0
    while engine.phase is not Phase.DONE:
        assert now < 60.0, "the round did not end"
        engine.tick(now)
        for cid, handler in handlers.items():
            task = engine.poll(cid, now=now)
            if not isinstance(task, Task):
                continue
            params = None
            if task.kind is TaskKind.TRAIN:
                params = {k: v.copy()
                          for k, v in engine.model_for(cid, task.task_id, now=now).params.items()}
            engine.submit(handler.handle(task, params), now=now)
        now += 0.05
    assert engine.records[-1].status == "ok", engine.records[-1].reason
    params = engine.params
    assert params is not None
    return np.asarray(params["w"])


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_a_negative_change_of_an_unsigned_tensor_is_averaged_as_negative(secure: bool) -> None:
    w = _play(_engine(secure))

    assert w.dtype == np.uint8
    assert w.tolist() == [GLOBAL - 2] * 4
