"""The round engine's queries and refusals where a mutation sample found them unpinned: the
deadline each kind of task gets (on a clock that does not start at 0), which task is open,
the layout `check_result` expects, a dropped client's late result, the record of a round
whose evaluation had too few clients, records handed out once, and the session a join
returns (docs/protocol.md: 16 random bytes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fedcore.engine import EngineConfig, Phase, RoundEngine, SelectionConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.records import RoundStatus
from fedcore.engine.registry import Registry
from fedcore.protocol.messages import Done, ResultHeader, Task, TaskKind, Wait
from fedcore.protocol.specs import EMPTY_SPEC, spec_of
from fedcore.strategy import FedAvg

from .conftest import Harness, engine_config, initial_model

T0 = 10_000.0


def _harness(clients: int, **overrides: Any) -> Harness:
    """A harness whose clock starts at T0, its clients joined then."""
    h = Harness(engine_config(**overrides), initial=initial_model())
    h.now = T0
    h.join(*(f"c{i}" for i in range(clients)))
    return h


def test_train_and_evaluate_tasks_get_their_own_timeouts() -> None:
    h = _harness(1, round_timeout_s=40.0, eval_timeout_s=7.0,
                 evaluate=SelectionConfig(fraction=1.0))
    train = h.poll("c0")
    assert isinstance(train, Task) and train.kind is TaskKind.TRAIN
    assert train.time_left_s == pytest.approx(40.0)
    assert h.engine.next_deadline() == pytest.approx(T0 + 40.0)

    h.advance(3.0)
    h.submit("c0", train)
    evaluate = h.poll("c0")
    assert isinstance(evaluate, Task) and evaluate.kind is TaskKind.EVALUATE
    assert evaluate.time_left_s == pytest.approx(7.0)
    assert h.engine.next_deadline() == pytest.approx(T0 + 10.0)
    assert h.poll("c0").time_left_s == pytest.approx(7.0)
    h.advance(6.75)
    assert h.poll("c0").time_left_s == pytest.approx(0.25)
    h.advance(0.25)  # the evaluation's deadline: it closes without results
    assert h.engine.phase is Phase.DONE
    assert "evaluation failed" in h.engine.records[0].reason


def test_only_the_open_task_is_open() -> None:
    h = _harness(1, num_rounds=2)
    first = h.poll("c0")
    assert isinstance(first, Task)
    assert h.engine.is_task_open(first.task_id) is True
    assert h.engine.is_task_open("t99-train-r1") is False
    h.submit("c0", first)
    second = h.poll("c0")
    assert isinstance(second, Task) and second.task_id != first.task_id
    assert h.engine.is_task_open(first.task_id) is False
    assert h.engine.is_task_open(second.task_id) is True


def test_check_result_returns_the_layout_the_payload_must_have() -> None:
    h = _harness(1, evaluate=SelectionConfig(fraction=1.0))
    train = h.poll("c0")
    assert isinstance(train, Task)
    header = ResultHeader(client_id="c0", task_id=train.task_id, num_examples=3, metrics={},
                          spec=spec_of(initial_model()))
    assert h.engine.check_result(header, now=T0) == spec_of(initial_model())
    declined = ResultHeader(client_id="c0", task_id=train.task_id, num_examples=1, metrics={},
                            spec=EMPTY_SPEC, declined_reason="busy")
    assert h.engine.check_result(declined, now=T0) == EMPTY_SPEC
    h.submit("c0", train)
    evaluate = h.poll("c0")
    assert isinstance(evaluate, Task)
    eval_header = ResultHeader(client_id="c0", task_id=evaluate.task_id, num_examples=3,
                               metrics={"loss": 1.0}, spec=EMPTY_SPEC)
    assert h.engine.check_result(eval_header, now=T0) == EMPTY_SPEC


def test_a_client_that_declined_cannot_report_after_all() -> None:
    h = _harness(2)
    tasks = h.tasks()
    h.submit("c0", tasks["c0"], declined_reason="low battery")
    before = h.snapshot()
    with pytest.raises(EngineError) as err:
        h.submit("c0", tasks["c0"], h.delta(5.0))
    assert err.value.reason is Reason.LATE
    assert h.snapshot() == before
    assert h.engine.open_clients() == ["c1"]


def test_a_client_that_left_cannot_report_after_rejoining() -> None:
    h = _harness(2)
    tasks = h.tasks()
    h.engine.leave("c0", now=T0)
    h.sessions["c0"] = h.engine.join("c0", now=T0)
    with pytest.raises(EngineError) as err:
        h.submit("c0", tasks["c0"], h.delta(5.0))
    assert err.value.reason is Reason.LATE
    assert h.engine.open_clients() == ["c1"]


def test_an_evaluation_with_too_few_clients_is_skipped_and_the_round_counts() -> None:
    h = _harness(1, num_rounds=2,
                 evaluate=SelectionConfig(fraction=1.0, min_results=2, min_available=2))
    h.play_round({"c0": (1.0, 1)})
    (record,) = h.engine.records
    assert record.reason == "evaluation skipped: too few clients available"
    assert record.status is RoundStatus.OK and record.loss is None and record.eval_clients == 0
    assert h.engine.phase is Phase.TRAINING and h.engine.round_number == 2


def test_new_records_are_handed_out_once() -> None:
    h = _harness(1, num_rounds=3)
    assert h.engine.pop_new_records() == []
    h.play_round({"c0": (1.0, 1)})
    assert [r.round for r in h.engine.pop_new_records()] == [1]
    assert h.engine.pop_new_records() == []
    h.play_round({"c0": (1.0, 1)})
    h.play_round({"c0": (1.0, 1)})
    assert [r.round for r in h.engine.pop_new_records()] == [2, 3]
    assert h.engine.pop_new_records() == []


def test_a_finished_run_tells_every_poll_how_many_rounds_it_ran() -> None:
    h = _harness(1, num_rounds=2)
    h.play_round({"c0": (1.0, 1)})
    h.play_round({"c0": (1.0, 1)})
    reply = h.poll("c0")
    assert isinstance(reply, Done)
    assert reply.reason == "the run finished after 2 rounds"


def test_a_session_is_16_fresh_random_bytes() -> None:
    asked: list[int] = []

    def source(n: int) -> bytes:
        asked.append(n)
        return bytes([len(asked)]) * n

    registry = Registry(10.0, source)
    first = registry.join("a", now=0.0, properties={})
    second = registry.join("a", now=0.0, properties={})
    assert asked == [16, 16] and len(first) == 16 and first != second
    engine = RoundEngine(EngineConfig(num_rounds=1), FedAvg(), initial_params={"w": np.zeros(1)})
    sessions = {engine.join("a", now=0.0) for _ in range(3)}
    assert len(sessions) == 3 and {len(s) for s in sessions} == {16}


def test_records_of_several_rounds_are_handed_out_together_on_the_first_call() -> None:
    h = _harness(1, num_rounds=3)
    h.play_round({"c0": (1.0, 1)})
    h.play_round({"c0": (1.0, 1)})
    assert [r.round for r in h.engine.pop_new_records()] == [1, 2]
    assert h.engine.pop_new_records() == []


def test_a_late_result_is_told_whether_the_deadline_passed_or_the_round_closed() -> None:
    h = _harness(2, num_rounds=2, round_timeout_s=30.0,
                 train=SelectionConfig(count=1, min_available=2))
    (cid, first), = h.tasks().items()
    h.advance(30.0)  # exactly the deadline: closed by it
    with pytest.raises(EngineError) as timed_out:
        h.submit(cid, first)
    assert timed_out.value.reason is Reason.LATE and "deadline passed" in str(timed_out.value)
    (cid, second), = h.tasks().items()
    h.submit(cid, second)  # the round closes at its target, before its deadline
    other = next(c for c in h.sessions if c != cid)
    with pytest.raises(EngineError) as closed:
        h.submit(other, second)
    assert closed.value.reason is Reason.LATE and "round closed" in str(closed.value)


def test_the_round_reports_the_largest_local_epsilon_also_below_one() -> None:
    h = _harness(3)
    tasks = h.tasks()
    for cid, eps in zip(sorted(tasks), (0.25, 0.5, 0.125), strict=True):
        h.submit(cid, tasks[cid], metrics={"epsilon": eps})
    (record,) = h.engine.records
    assert record.metrics["epsilon"] == 0.5


def test_a_client_outside_the_round_leaving_does_not_close_it() -> None:
    h = _harness(3, train=SelectionConfig(count=2, min_results=2, min_available=2))
    tasks = h.tasks()
    (outsider,) = set(h.sessions) - set(tasks)
    first = min(tasks)
    h.submit(first, tasks[first])
    h.engine.leave(outsider, now=h.now)
    assert h.engine.phase is Phase.TRAINING and h.engine.records == []
    assert h.engine.open_clients() == [max(tasks)]


def test_once_the_model_exists_the_retry_hint_is_the_configured_one() -> None:
    h = _harness(2, retry_after_s=2.5, train=SelectionConfig(count=1))
    (selected,) = h.tasks()
    (other,) = set(h.sessions) - {selected}
    reply = h.poll(other)
    assert isinstance(reply, Wait) and reply.retry_after_s == 2.5
    assert reply.reason == "round 1 (training) is full"
    assert h.engine.retry_after(other, now=h.now) == 2.5


def test_a_client_waiting_before_any_round_is_told_why() -> None:
    h = Harness(engine_config(train=SelectionConfig(count=2, min_available=2)),
                initial=initial_model())
    h.now = T0
    h.join("c0")
    reply = h.poll("c0")
    assert isinstance(reply, Wait) and reply.reason == "waiting for clients to join"


def test_a_client_backing_off_the_initialize_task_is_told_why() -> None:
    h = Harness(engine_config(retry_after_s=4.0), initial=None)
    h.now = T0
    h.join("c0")
    (cid, task), = h.tasks().items()
    h.submit(cid, task, declined_reason="no model")
    reply = h.poll(cid)
    assert isinstance(reply, Wait)
    assert reply.reason == "waiting: the initial model is asked of other clients first"
    assert h.engine.retry_after(cid, now=h.now + 1.0) == 3.0
    h.join("c1")  # a fresh client: asked for the model at once, not told to wait
    assert isinstance(h.poll("c1"), Task)
