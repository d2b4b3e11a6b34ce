"""FedBuff's engine: staleness weights, buffer boundaries, a scripted run against a hand
computation, and the refusals that change nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.engine.buffered import (
    BufferedConfig,
    BufferedEngine,
    Outcome,
    staleness_weight,
)
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import Done, ResultHeader, Task, TaskResult, Wait
from fedcore.strategy import FedAvg


def _engine(k: int = 2, concurrency: int = 3, updates: int = 5, **kwargs: object
            ) -> BufferedEngine:
    config = BufferedConfig(buffer_size=k, concurrency=concurrency, num_updates=updates,
                            **kwargs)  # type: ignore[arg-type]
    return BufferedEngine(config, FedAvg(), {"w": np.zeros(1, np.float64)})


def _task(engine: BufferedEngine, cid: str, now: float = 0.0) -> Task:
    reply = engine.poll(cid, now=now)
    assert isinstance(reply, Task), reply
    return reply


def _result(task: Task, cid: str, delta: float, examples: int = 5) -> TaskResult:
    return TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id,
                                          num_examples=examples),
                      tensors={"w": np.array([delta])})


def test_staleness_weights() -> None:
    assert staleness_weight(0) == 1.0
    assert staleness_weight(3) == pytest.approx(0.5)
    assert staleness_weight(8) == pytest.approx(1 / 3)
    assert staleness_weight(5, exponent=0.0) == 1.0
    assert staleness_weight(1, exponent=1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        staleness_weight(-1)


def test_scripted_run_matches_hand_computation() -> None:
    # K = 2. t1, t2, t3 start from version 0. t1 (+1) and t2 (+3), fresh: x1 = (1 + 3) / 2 = 2.
    # t4 starts from version 1. t3 (+2, tau = 1, s = 1/sqrt 2) and t4 (-1, tau = 0):
    # x2 = 2 + (2 / sqrt 2 - 1) / 2.
    engine = _engine(k=2, concurrency=3)
    t1, t2, t3 = (_task(engine, c) for c in ("a", "b", "c"))
    assert isinstance(engine.poll("d", now=0.0), Wait)  # three slots, all taken
    assert engine.submit(_result(t1, "a", 1.0), now=1.0) is Outcome.BUFFERED
    assert engine.version == 0 and engine.buffered == 1
    assert engine.submit(_result(t2, "b", 3.0), now=2.0) is Outcome.APPLIED
    assert engine.version == 1 and engine.buffered == 0
    np.testing.assert_allclose(engine.params["w"], [2.0])
    t4 = _task(engine, "d", now=2.0)
    assert t4.round == 2
    np.testing.assert_array_equal(engine.model_for(t3.task_id)["w"], [0.0])  # v0 kept for t3
    np.testing.assert_array_equal(engine.model_for(t4.task_id)["w"], [2.0])
    assert engine.submit(_result(t3, "c", 2.0), now=3.0) is Outcome.BUFFERED
    assert engine.submit(_result(t4, "d", -1.0), now=4.0) is Outcome.APPLIED
    np.testing.assert_allclose(engine.params["w"], [2.0 + (2.0 / math.sqrt(2) - 1.0) / 2])
    assert [r.staleness for r in engine.records] == [(0, 0), (1, 0)]
    assert [r.version for r in engine.records] == [1, 2]
    assert [r.at_s for r in engine.records] == [2.0, 4.0]


def test_buffer_applies_exactly_every_k_results_with_tau_from_download() -> None:
    engine = _engine(k=3, concurrency=6, updates=10)
    first = [_task(engine, f"c{i}") for i in range(6)]  # all from version 0
    outcomes = [engine.submit(_result(t, f"c{i}", 1.0), now=1.0 + i)
                for i, t in enumerate(first)]
    assert outcomes == [Outcome.BUFFERED, Outcome.BUFFERED, Outcome.APPLIED] * 2
    assert engine.version == 2
    # results 4..6 came from version 0 after version 1: tau = 1 each
    assert [r.staleness for r in engine.records] == [(0, 0, 0), (1, 1, 1)]
    # a task from version 2 answered after two more updates has tau = 2
    late = _task(engine, "late", now=7.0)
    for j in range(6):
        engine.submit(_result(_task(engine, f"d{j}", now=8.0), f"d{j}", 0.0), now=9.0)
    assert engine.version == 4
    engine.submit(_result(late, "late", 1.0), now=10.0)
    assert engine.buffered == 1
    for j in range(2):
        engine.submit(_result(_task(engine, f"e{j}", now=10.0), f"e{j}", 0.0), now=11.0)
    assert engine.records[-1].staleness == (2, 0, 0)


def test_max_staleness_refuses_old_results_and_frees_their_slot() -> None:
    engine = _engine(k=1, concurrency=2, max_staleness=1)
    old = _task(engine, "old")
    for i in range(2):
        engine.submit(_result(_task(engine, f"n{i}"), f"n{i}", 1.0), now=1.0)
    assert engine.version == 2
    before = engine.params["w"].copy()
    assert engine.submit(_result(old, "old", 100.0), now=2.0) is Outcome.STALE
    assert engine.stale_refused == 1 and engine.outstanding == 0
    np.testing.assert_array_equal(engine.params["w"], before)


def test_expired_and_declined_tasks_free_their_slots() -> None:
    engine = _engine(k=1, concurrency=1, task_timeout_s=10.0)
    gone = _task(engine, "a", now=0.0)
    assert isinstance(engine.poll("b", now=5.0), Wait)
    assert engine.next_deadline() == 10.0
    declined = _task(engine, "b", now=10.0)  # a's task expired at its deadline
    assert engine.expired == 1
    with pytest.raises(EngineError) as err:
        engine.submit(_result(gone, "a", 1.0), now=11.0)
    assert err.value.reason is Reason.NOT_ASSIGNED
    refusal = TaskResult(header=ResultHeader(client_id="b", task_id=declined.task_id,
                                             num_examples=0, declined_reason="busy"))
    assert engine.submit(refusal, now=12.0) is Outcome.DECLINED
    assert engine.outstanding == 0 and engine.version == 0


def test_bad_results_change_nothing() -> None:
    engine = _engine(k=2, concurrency=2)
    task = _task(engine, "a")
    with pytest.raises(EngineError) as wrong_client:
        engine.submit(_result(task, "b", 1.0), now=1.0)
    assert wrong_client.value.reason is Reason.NOT_ASSIGNED
    bad_shape = TaskResult(header=ResultHeader(client_id="a", task_id=task.task_id,
                                               num_examples=1),
                           tensors={"w": np.zeros(2)})
    nan = _result(task, "a", float("nan"))
    for bad in (bad_shape, nan):
        with pytest.raises(EngineError) as invalid:
            engine.submit(bad, now=1.0)
        assert invalid.value.reason is Reason.INVALID
    assert engine.outstanding == 1 and engine.buffered == 0
    assert engine.submit(_result(task, "a", 1.0), now=2.0) is Outcome.BUFFERED


def test_one_task_per_client_and_done_after_the_last_update() -> None:
    engine = _engine(k=1, concurrency=3, updates=1)
    t = _task(engine, "a")
    other = _task(engine, "b")
    again = engine.poll("a", now=0.5)  # a client asking again gets its task again
    assert isinstance(again, Task) and again.task_id == t.task_id and engine.outstanding == 2
    assert again.time_left_s == t.time_left_s - 0.5
    engine.release("b")  # b left: its slot is free
    assert engine.outstanding == 1 and not engine.is_out(other.task_id)
    assert engine.submit(_result(t, "a", 1.0), now=1.0) is Outcome.APPLIED
    assert engine.done and isinstance(engine.poll("c", now=1.0), Done)
    assert engine.submit(_result(t, "a", 1.0), now=2.0) is Outcome.AFTER_END


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        BufferedConfig(buffer_size=4, concurrency=2, num_updates=1)
    with pytest.raises(ValueError, match="buffer_size"):
        BufferedConfig(buffer_size=0, concurrency=2, num_updates=1)


def test_the_grpc_facade_checks_ownership_and_reports_each_step_as_a_round() -> None:
    from fedcore.engine import EngineConfig
    from fedcore.engine.buffered_coordinator import BufferedCoordinator
    from fedcore.engine.engine import Phase

    engine = _engine(k=1, concurrency=2, updates=2)
    facade = BufferedCoordinator(engine, EngineConfig(num_rounds=1))
    session = facade.join("a", now=0.0)
    facade.authenticate("a", session, now=0.0)
    task = facade.poll("a", now=0.0)
    assert isinstance(task, Task)
    assert facade.open_clients() == ["a"] and facade.phase is Phase.TRAINING
    model = facade.model_for("a", task.task_id, now=0.0)
    assert model.spec == engine.spec and facade.check_result(
        _result(task, "a", 1.0).header, now=0.0) == engine.spec
    with pytest.raises(EngineError) as other:
        facade.model_for("b", task.task_id, now=0.0)
    assert other.value.reason is Reason.NOT_ASSIGNED
    before = facade.progress
    facade.submit(_result(task, "a", 1.0), now=3.0)
    with pytest.raises(EngineError) as late:  # answered: no longer open
        facade.check_result(_result(task, "a", 1.0).header, now=3.0)
    assert late.value.reason is Reason.LATE
    assert facade.progress == before  # a server step wakes no one, cuts no upload short
    [record] = facade.pop_new_records()
    assert (record.round, record.results_received, record.duration_s) == (1, 1, 3.0)
    assert record.metrics["max_staleness"] == 0.0 and facade.pop_new_records() == []
    second = facade.poll("a", now=4.0)
    assert isinstance(second, Task)
    facade.leave("a", now=4.5)  # its task is dropped with it
    assert engine.outstanding == 0
    third = facade.poll("b", now=5.0)
    assert isinstance(third, Task)
    facade.submit(_result(third, "b", 1.0), now=6.0)
    assert facade.phase is Phase.DONE and facade.progress != before
    assert [r.round for r in facade.records] == [1, 2]


def test_a_steps_duration_counts_from_when_the_coordinator_first_saw_time() -> None:
    """Served over gRPC the clock is monotonic time (any origin), and a restored run's records
    carry another process's clock: neither makes a duration."""
    from fedcore.engine import EngineConfig
    from fedcore.engine.buffered_coordinator import BufferedCoordinator

    engine = _engine(k=1, concurrency=1, updates=3)
    facade = BufferedCoordinator(engine, EngineConfig(num_rounds=1))
    facade.tick(20_000.0)
    task = facade.poll("a", now=20_001.0)
    assert isinstance(task, Task)
    facade.submit(_result(task, "a", 1.0), now=20_003.5)
    [record] = facade.pop_new_records()
    assert record.duration_s == 3.5

    restored = BufferedEngine.restore(engine.config, FedAvg(), engine.snapshot())
    again = BufferedCoordinator(restored, EngineConfig(num_rounds=1))  # new process: clock ~0
    again.tick(5.0)
    task = again.poll("a", now=6.0)
    assert isinstance(task, Task)
    again.submit(_result(task, "a", 1.0), now=7.0)
    [step] = again.pop_new_records()
    assert (step.round, step.duration_s) == (2, 2.0)
