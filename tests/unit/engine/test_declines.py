"""A decline or a leave ends that client's part at once: in plain rounds, in every phase of a
secure-aggregation round (no phase waits for its deadline), and for the INITIALIZE task, which
is not offered again to the same client before a backoff."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp
from fedcore.client.handler import TaskHandler
from fedcore.engine import EngineConfig, Phase, RoundEngine, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.messages import Task, TaskKind, Wait
from fedcore.strategy import FedAvg

N = 5
IDS = [f"c{i}" for i in range(N)]
ADDS = {cid: 0.01 * (i + 1) for i, cid in enumerate(IDS)}
PHASE_TIMEOUT_S = 30.0
STEP_S = 0.05


def _secure_engine() -> RoundEngine:
    engine = RoundEngine(
        EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=600.0, client_timeout_s=1000.0,
                     train=SelectionConfig(fraction=1.0, min_available=N, min_results=3),
                     secagg=SecureAggregationConfig(max_clients=10, clip=1.0, weight_cap=10,
                                                    phase_timeout_s=PHASE_TIMEOUT_S)),
        FedAvg(), initial_params={"w": np.zeros(6, np.float32)},
    )
    for cid in IDS:
        engine.join(cid, now=0.0)
    engine.tick(0.0)
    return engine


def _handler(cid: str) -> TaskHandler:
    def fit(params, config):  # type: ignore[no-untyped-def]
        return FitResult(params={k: v + np.float32(ADDS[cid]) for k, v in params.items()},
                         num_examples=10)

    app = FunctionalApp(get_parameters=lambda: {"w": np.zeros(6, np.float32)}, fit=fit,
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    return TaskHandler(app, cid)


def _play_secure(engine: RoundEngine, quitter: str, at_step: int, how: str) -> None:
    """Every client answers each step at once, but `quitter` declines or leaves at its
    `at_step`-th task (0: the TRAIN setup, 1: the key list, 2: the share relay, 3: the unmask
    request). The clock moves `STEP_S` per sweep, so only the protocol moves the round along."""
    handlers = {cid: _handler(cid) for cid in IDS}
    steps = dict.fromkeys(IDS, 0)
    now = 0.0
    while engine.phase is not Phase.DONE:
        assert now < 4 * PHASE_TIMEOUT_S, "the round did not end"
        engine.tick(now)
        for cid, handler in handlers.items():
            task = engine.poll(cid, now=now)
            if not isinstance(task, Task):
                continue
            if cid == quitter and steps[cid] == at_step:
                if how == "leave":
                    engine.leave(cid, now=now)
                else:
                    engine.submit(handler.decline(task, "not now"), now=now)
                continue
            steps[cid] += 1
            params = None
            if task.kind is TaskKind.TRAIN:
                params = {k: v.copy() for k, v in engine.model_for(cid, task.task_id, now=now).params.items()}
            engine.submit(handler.handle(task, params), now=now)
        now += STEP_S


@pytest.mark.parametrize("how", ["decline", "leave"])
@pytest.mark.parametrize("at_step", [0, 1, 2, 3])
def test_a_client_quitting_a_secure_round_in_any_phase_does_not_hold_the_phase(
    at_step: int, how: str
) -> None:
    # arrange
    engine = _secure_engine()

    # act
    _play_secure(engine, "c0", at_step, how)

    # assert, on the simulated clock the test moves itself (no wall time): the round ended
    # before any phase deadline could have closed a phase
    (record,) = engine.records
    assert record.status == "ok", record.reason
    sweeps = round(record.duration_s / STEP_S)  # simulated steps of STEP_S the round took
    assert sweeps * STEP_S < PHASE_TIMEOUT_S
    # before masking, c0's update is out of the sum; once its masked input is in, it stays
    survivors = IDS if at_step == 3 else IDS[1:]
    assert record.results_received == len(survivors)
    np.testing.assert_allclose(engine.params["w"], np.mean([ADDS[c] for c in survivors]),
                               atol=1e-6)


def test_too_many_quitting_a_secure_round_abort_it_at_once() -> None:
    # arrange: t = 4 of 5; two decline the setup
    engine = _secure_engine()
    handlers = {cid: _handler(cid) for cid in IDS}
    tasks = {cid: engine.poll(cid, now=0.0) for cid in IDS}

    # act
    for cid in ("c0", "c1"):
        task = tasks[cid]
        assert isinstance(task, Task)
        engine.submit(handlers[cid].decline(task, "not now"), now=0.0)
    for cid in ("c2", "c3", "c4"):
        task = tasks[cid]
        assert isinstance(task, Task)
        params = dict(engine.model_for(cid, task.task_id, now=0.0).params)
        engine.submit(handlers[cid].handle(task, params), now=1.0)

    # assert: the key phase closed with 3 < t at the last answer, not at its deadline
    (record,) = engine.records
    assert record.status == "failed" and "threshold" in record.reason
    assert record.duration_s == 1.0


@pytest.mark.parametrize("how", ["decline", "leave"])
def test_a_client_quitting_a_plain_round_closes_it_without_the_deadline(
    make_harness, how: str
) -> None:
    # arrange
    h = make_harness(clients=3, client_timeout_s=1000.0)
    tasks = h.tasks()

    # act
    if how == "leave":
        h.engine.leave("c0", now=h.now)
    else:
        h.submit("c0", tasks["c0"], declined_reason="not now")
    h.submit("c1", tasks["c1"])
    h.submit("c2", tasks["c2"])

    # assert
    (record,) = h.engine.records
    assert (record.status, record.results_received, record.duration_s) == ("ok", 2, 0.0)


def _offers(h, cid: str, until: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Poll `cid` every 10 ms of engine time until `until`, declining every task; returns
    when it was offered the INITIALIZE task."""
    offered = []
    while h.now < until:
        reply = h.poll(cid)
        if isinstance(reply, Task):
            assert reply.kind is TaskKind.INITIALIZE
            offered.append(round(h.now, 2))
            h.submit(cid, reply, declined_reason="no model here")
        else:
            assert isinstance(reply, Wait)
        h.advance(0.01)
    return offered


def test_a_declined_initialize_task_is_offered_again_only_after_a_doubling_backoff(
    make_harness
) -> None:
    h = make_harness(initial=None, clients=1, client_timeout_s=1000.0, retry_after_s=1.0)

    offered = _offers(h, "c0", until=10.0)

    assert offered == pytest.approx([0.0, 1.0, 3.0, 7.0], abs=0.05)
    assert h.engine.params is None and h.engine.phase is Phase.WAITING


def test_while_one_client_backs_off_another_is_asked_for_the_initial_model(
    make_harness, model
) -> None:
    h = make_harness(initial=None, clients=2, client_timeout_s=1000.0)
    ((first, task),) = h.tasks().items()

    h.submit(first, task, declined_reason="no model here")
    ((second, retry),) = h.tasks().items()
    h.submit(second, retry, model)

    assert second != first and retry.kind is TaskKind.INITIALIZE
    assert h.engine.phase is Phase.TRAINING


def test_the_retry_hint_after_a_declined_initialize_task_is_what_is_left_of_its_backoff(
    make_harness
) -> None:
    h = make_harness(initial=None, clients=2, client_timeout_s=1000.0, retry_after_s=1.0)
    ((first, task),) = h.tasks().items()
    other = next(c for c in h.sessions if c != first)

    h.submit(first, task, declined_reason="no model here")
    h.advance(0.25)

    assert h.engine.retry_after(first, now=h.now) == pytest.approx(0.75)
    assert h.engine.retry_after(other, now=h.now) == 1.0  # the engine's plain hint
