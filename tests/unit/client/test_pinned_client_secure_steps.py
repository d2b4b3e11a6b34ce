"""The task handler holds a secure-aggregation session only while its round needs it: a step
for another task is refused without touching the open session, a refused step drops the session
(nothing more is released in that round, even to a genuine next step), and a finished round
leaves no session behind, so a replayed step is refused as one without state. Driven through
the round engine in memory, unsigned rounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from fedcore.client import ClientAppError, DeclineTask, EvalResult, FitResult, FunctionalApp
from fedcore.client.handler import TaskHandler
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.messages import SecAggSetup, Task, TaskKind
from fedcore.protocol.params import Params
from fedcore.secagg.messages import KeyList
from fedcore.strategy import FedAvg

N = 5
IDS = [f"site-{i}" for i in range(N)]
ADDS = {cid: 0.01 * (i + 1) for i, cid in enumerate(IDS)}
NO_STATE = "no secure-aggregation state"

Hook = Callable[[str, Task, TaskHandler], Task]


def _app(cid: str) -> FunctionalApp:
    def fit(params: Params, config: object) -> FitResult:
        return FitResult(params={k: v + np.float32(ADDS[cid]) for k, v in params.items()},
                         num_examples=10)

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(6, np.float32)}, fit=fit,
                         evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))


def _engine() -> RoundEngine:
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=60.0, client_timeout_s=1e9,
                     train=SelectionConfig(fraction=1.0, min_available=N),
                     secagg=SecureAggregationConfig(max_clients=10, clip=1.0, weight_cap=10)),
        FedAvg(), initial_params={"w": np.zeros(6, np.float32)},
    )
    for cid in IDS:
        engine.join(cid, now=0.0)
    engine.tick(0.0)
    return engine


def _play(engine: RoundEngine, handlers: dict[str, TaskHandler],
          hook: Hook | None = None) -> dict[str, list[Task]]:
    """Every client polls and answers until the run ends (a refusal: a decline); returns the
    secure-aggregation steps (SECAGG tasks) each client answered."""
    steps: dict[str, list[Task]] = {cid: [] for cid in handlers}
    now = 0.0
    for _ in range(400):
        engine.tick(now)
        if engine.phase.value == "done":
            return steps
        for cid, handler in handlers.items():
            task = engine.poll(cid, now=now)
            if not isinstance(task, Task):
                continue
            if hook is not None:
                task = hook(cid, task, handler)
            params = None
            if task.kind in (TaskKind.TRAIN, TaskKind.EVALUATE):
                params = {k: v.copy()
                          for k, v in engine.model_for(cid, task.task_id, now=now).params.items()}
            try:
                result = handler.handle(task, params)
            except (DeclineTask, ClientAppError) as refusal:
                result = handler.decline(task, str(refusal))
            else:
                if task.kind is TaskKind.SECAGG:
                    steps[cid].append(task)
            engine.submit(result, now=now)
        now += 1.0
    raise AssertionError("the run did not end")


def _handlers() -> dict[str, TaskHandler]:
    return {cid: TaskHandler(_app(cid), cid) for cid in IDS}


def test_a_finished_round_leaves_no_session_and_a_replayed_step_is_refused() -> None:
    engine, handlers = _engine(), _handlers()

    steps = _play(engine, handlers)

    assert engine.records[0].status == "ok" and engine.records[0].results_received == N
    np.testing.assert_allclose(engine.params["w"], np.mean(list(ADDS.values())), atol=1e-6)
    for cid, handler in handlers.items():
        assert steps[cid], cid
        with pytest.raises(ClientAppError, match=NO_STATE):
            handler.handle(steps[cid][-1], None)  # the round is over: nothing to answer from


def test_a_step_for_another_task_is_refused_and_the_open_session_goes_on() -> None:
    engine, handlers = _engine(), _handlers()
    refused: list[str] = []

    def foreign_first(cid: str, task: Task, handler: TaskHandler) -> Task:
        if cid == IDS[0] and isinstance(task.secagg, KeyList) and not refused:
            with pytest.raises(ClientAppError, match=NO_STATE) as refusal:
                handler.handle(replace(task, task_id=task.task_id + "-other"), None)
            refused.append(str(refusal.value))
        return task

    _play(engine, handlers, foreign_first)

    assert len(refused) == 1
    # the genuine steps went on from the untouched session: every client counted, exact mean
    assert engine.records[0].status == "ok" and engine.records[0].results_received == N
    np.testing.assert_allclose(engine.params["w"], np.mean(list(ADDS.values())), atol=1e-6)


def test_after_a_refused_step_the_session_is_gone_even_for_a_genuine_step() -> None:
    engine, handlers = _engine(), _handlers()
    victim = IDS[0]
    outcomes: list[str] = []

    def misaddressed_then_genuine(cid: str, task: Task, handler: TaskHandler) -> Task:
        if cid != victim or not isinstance(task.secagg, KeyList) or outcomes:
            return task
        wrong = replace(task, secagg=replace(task.secagg, recipient=task.secagg.recipient + 1))
        with pytest.raises(ClientAppError) as first:
            handler.handle(wrong, None)
        outcomes.append(str(first.value))
        with pytest.raises(ClientAppError, match=NO_STATE):
            handler.handle(task, None)  # the genuine key list: nothing more is released
        outcomes.append("genuine refused")
        return task  # the driver's attempt is refused too, and becomes a decline

    steps = _play(engine, handlers, misaddressed_then_genuine)

    assert NO_STATE not in outcomes[0] and outcomes[1] == "genuine refused"
    assert steps[victim] == []  # it answered no step of the round
    # the round went on without it
    assert engine.records[0].results_received == N - 1
    rest = [ADDS[c] for c in IDS[1:]]
    np.testing.assert_allclose(engine.params["w"], np.mean(rest), atol=1e-6)


def test_a_secure_training_result_carries_no_tensors() -> None:
    engine, handlers = _engine(), _handlers()
    task = engine.poll(IDS[0], now=0.0)
    assert isinstance(task, Task) and isinstance(task.secagg, SecAggSetup)

    result = handlers[IDS[0]].handle(
        task, {k: v.copy() for k, v in engine.model_for(IDS[0], task.task_id, now=0.0)
               .params.items()})

    assert result.tensors == {} and result.header.secagg is not None
    assert handlers[IDS[0]].trained_examples == 10
