"""Queries (`poll`, `model_for`, `check_result`) never change the engine; only events and
`tick` do, so a driver decides when time passes."""

from __future__ import annotations

from fedcore.engine import Phase
from fedcore.protocol.messages import ResultHeader, Task
from fedcore.protocol.specs import spec_of


def test_queries_past_the_deadline_leave_the_round_open(make_harness) -> None:
    h = make_harness(clients=2, round_timeout_s=60.0)
    cid, task = next(iter(h.tasks().items()))
    header = ResultHeader(client_id=cid, task_id=task.task_id, num_examples=1,
                          spec=spec_of(h.delta(0.0)))
    before = (h.snapshot(), h.engine.open_task_id, h.engine.progress)

    late = h.now + 1000.0
    reply = h.engine.poll(cid, now=late)
    h.engine.model_for(cid, task.task_id, now=late)
    h.engine.check_result(header, now=late)

    assert isinstance(reply, Task) and reply.time_left_s == 0.0
    assert (h.snapshot(), h.engine.open_task_id, h.engine.progress) == before


def test_a_tick_past_the_deadline_closes_the_round(make_harness) -> None:
    h = make_harness(clients=2, round_timeout_s=60.0)
    h.tasks()

    h.advance(1000.0)

    (record,) = h.engine.records
    assert record.status == "failed" and h.engine.phase is Phase.DONE


def test_no_round_opens_on_a_poll_before_a_tick(make_harness) -> None:
    h = make_harness(clients=0)
    h.sessions["c0"] = h.engine.join("c0", now=h.now)

    assert not isinstance(h.poll("c0"), Task)
    h.engine.tick(h.now)
    assert isinstance(h.poll("c0"), Task)
