"""Secure FedBuff buffers, pinned: the outcome a submit reports when its group aborts, a
group's deadline (closed at it, not before), the deadlines and specs the service reads for
groups, members who left, and results after the end."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine.buffered import Outcome
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult, Wait
from fedcore.protocol.specs import EMPTY_SPEC

from .test_buffered_secure import DIM, SECURE, Clients, _engine


def _group_of_three() -> tuple[object, Clients]:
    engine = _engine(k=3, concurrency=3, updates=2)
    clients = Clients(engine, {"a": 0.1, "b": 0.2, "c": 0.3})
    for cid in "abc":
        engine.poll(cid, now=0.0)
    return engine, clients


def test_a_decline_that_aborts_the_group_reports_failed() -> None:
    engine, clients = _group_of_three()
    outcomes = []
    for cid in "bc":  # two of three decline: below the threshold of 2
        task = clients.poll(cid)
        assert task is not None
        outcomes.append(engine.submit(clients.handlers[cid].decline(task, "busy"), now=1.0))
    assert outcomes == [Outcome.DECLINED, Outcome.DECLINED]
    clients.finish(["a"], "sbuf-1")  # a's message closes the protocol: too few survivors
    assert clients.outcomes[-1] is Outcome.FAILED
    assert engine.groups_failed == 1 and engine.version == 0 and engine.open_groups == 0  # type: ignore[attr-defined]
    assert engine.declined == 2 and engine.last_failure.startswith("sbuf-1")  # type: ignore[attr-defined]


def test_a_silent_group_fails_when_its_first_phase_times_out_not_before() -> None:
    engine, _ = _group_of_three()
    engine.tick(SECURE.phase_timeout_s - 0.001)  # type: ignore[attr-defined]
    assert engine.open_groups == 1 and engine.groups_failed == 0  # type: ignore[attr-defined]
    engine.tick(SECURE.phase_timeout_s + 0.001)  # type: ignore[attr-defined]
    assert engine.open_groups == 0 and engine.groups_failed == 1  # type: ignore[attr-defined]
    assert engine.outstanding == 0 and engine.version == 0  # type: ignore[attr-defined]


def test_the_next_deadline_is_the_groups_phase_deadline() -> None:
    engine = _engine(k=2, concurrency=2, updates=1)
    assert engine.next_deadline() is None
    engine.poll("a", now=5.0)
    assert engine.next_deadline() is None  # a forming group has no deadline yet
    engine.poll("b", now=5.0)
    deadline = engine.next_deadline()
    assert deadline is not None and 5.0 < deadline <= 5.0 + 600.0
    assert deadline == 5.0 + SECURE.phase_timeout_s  # the first phase closes before the group


def test_group_queries_and_refusals() -> None:
    engine, clients = _group_of_three()
    assert engine.task_of("sbuf-1") is None  # a group's task is many clients'
    assert engine.version_of("a", "sbuf-1") == 0
    np.testing.assert_array_equal(engine.model_for("sbuf-1")["w"], np.zeros(DIM))
    with pytest.raises(EngineError) as unknown:
        engine.model_for("sbuf-9")
    assert unknown.value.reason is Reason.NOT_ASSIGNED
    declined = ResultHeader(client_id="a", task_id="sbuf-1", num_examples=0,
                            declined_reason="busy")
    assert engine.expected_spec(declined) == EMPTY_SPEC
    with pytest.raises(EngineError) as outsider:
        engine.expected_spec(ResultHeader(client_id="z", task_id="sbuf-1", num_examples=1))
    assert outsider.value.reason is Reason.NOT_ASSIGNED


def test_a_member_that_declined_is_late_in_its_group() -> None:
    engine, clients = _group_of_three()
    task = clients.poll("c")
    assert task is not None
    decline = clients.handlers["c"].decline(task, "busy")
    assert engine.submit(decline, now=1.0) is Outcome.DECLINED
    with pytest.raises(EngineError) as err:
        engine.submit(decline, now=1.0)
    assert err.value.reason is Reason.LATE and engine.declined == 1
    with pytest.raises(EngineError) as version:
        engine.version_of("c", "sbuf-1")
    assert version.value.reason is Reason.LATE
    assert engine.outstanding == 2 and engine.clients_out() == {"a", "b"}


def test_a_member_that_left_waits_and_the_group_goes_on() -> None:
    engine = _engine(k=3, concurrency=3, updates=1)
    clients = Clients(engine, {"a": 0.3, "b": 0.3, "c": 0.3})
    for cid in "abc":
        engine.poll(cid, now=0.0)
    engine.release("c")
    assert engine.outstanding == 2 and engine.members_of("sbuf-1") == {"a", "b", "c"}
    clients.finish(["a", "b"], "sbuf-1")
    assert engine.version == 1
    np.testing.assert_allclose(engine.params["w"], 0.3 * 2 / 3, atol=1e-5)


def test_a_group_message_after_the_run_ended_is_dropped() -> None:
    engine = _engine(k=2, concurrency=4, updates=1)
    clients = Clients(engine, {"a": 0.1, "b": 0.1, "c": 0.5, "d": 0.5})
    for cid in "abcd":
        engine.poll(cid, now=0.0)
    late = clients.poll("c")
    assert late is not None and late.task_id == "sbuf-2"
    result = clients.handlers["c"].handle(late, dict(engine.model_for(late.task_id)))
    clients.finish(["a", "b"], "sbuf-1")
    assert engine.trained and engine.open_groups == 0
    assert engine.submit(result, now=1.0) is Outcome.AFTER_END
    assert engine.version == 1


def test_a_waiting_member_is_told_to_wait_with_the_configured_retry() -> None:
    engine = _engine(k=2, concurrency=2, updates=1, retry_after_s=3.0)
    wait = engine.poll("a", now=0.0)
    assert isinstance(wait, Wait) and wait.retry_after_s == 3.0
    task = engine.poll("b", now=10.0)
    assert isinstance(task, Task) and task.kind is TaskKind.TRAIN and task.round == 1
    assert task.time_left_s == 600.0
    again = engine.poll("b", now=25.0)  # before the first phase's timeout (30 s)
    assert isinstance(again, Task) and again.time_left_s == pytest.approx(585.0)


def test_an_evaluation_result_in_a_secure_run_goes_to_the_plain_engine() -> None:
    engine = _engine(k=2, concurrency=2, updates=2, eval_every=1, eval_clients=1)
    clients = Clients(engine, {"a": 0.1, "b": 0.1})
    engine.poll("a", now=0.0)
    engine.poll("b", now=0.0)
    clients.finish(["a", "b"], "sbuf-1")
    ev = engine.poll("e", now=1.0)
    assert isinstance(ev, Task) and ev.kind is TaskKind.EVALUATE
    assert engine.task_of(ev.task_id) == ("e", 1)
    assert engine.expected_spec(ResultHeader(client_id="e", task_id=ev.task_id,
                                             num_examples=1)) == EMPTY_SPEC
    np.testing.assert_allclose(engine.model_for(ev.task_id)["w"], 0.1, atol=1e-5)
    done = TaskResult(header=ResultHeader(client_id="e", task_id=ev.task_id, num_examples=2,
                                          metrics={"loss": 0.5}))
    assert engine.submit(done, now=2.0) is Outcome.EVALUATED
    assert engine.records[0].evaluation == {"loss": 0.5}


def test_a_member_leaving_before_any_tick_is_dropped_at_the_time_last_seen() -> None:
    # the engine's clock starts at 0: a group opened at 0 with a deadline under a second is
    # still open when a member leaves before anything moved the clock
    from fedcore.engine.buffered import BufferedConfig
    from fedcore.engine.buffered_secure import SecureBufferedEngine
    from fedcore.strategy import FedAvg

    config = BufferedConfig(buffer_size=3, concurrency=3, num_updates=1, task_timeout_s=0.5)
    engine = SecureBufferedEngine(config, FedAvg(), {"w": np.zeros(DIM, np.float32)}, SECURE)
    for cid in "abc":
        engine.poll(cid, now=0.0)
    engine.release("c")
    assert engine.open_groups == 1 and engine.groups_failed == 0
    assert engine.members_of("sbuf-1") == {"a", "b", "c"} and engine.outstanding == 2
