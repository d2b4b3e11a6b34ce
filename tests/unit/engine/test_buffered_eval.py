"""Federated evaluation during a buffered run: which versions are evaluated, by whom, what each
record then carries, when a step is reported, and the run's end waiting for the last one."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine, Outcome
from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.checkpoint import buffered_checkpoint_from_bytes, buffered_checkpoint_to_bytes
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import Done, ResultHeader, Task, TaskKind, TaskResult, Wait
from fedcore.strategy import FedAvg

TIMEOUT_S = 60.0


def _engine(updates: int = 3, every: int = 2, clients: int = 2, concurrency: int = 1
            ) -> BufferedEngine:
    config = BufferedConfig(buffer_size=1, concurrency=concurrency, num_updates=updates,
                            task_timeout_s=TIMEOUT_S, eval_every=every, eval_clients=clients)
    return BufferedEngine(config, FedAvg(), {"w": np.zeros(2)})


def _poll(engine: BufferedEngine, cid: str, now: float = 0.0) -> Task:
    reply = engine.poll(cid, now=now)
    assert isinstance(reply, Task), reply
    return reply


def _train(engine: BufferedEngine, cid: str, delta: float, now: float = 0.0) -> Outcome:
    task = _poll(engine, cid, now)
    assert task.kind is TaskKind.TRAIN
    return engine.submit(TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id,
                                                        num_examples=1),
                                    tensors={"w": np.full(2, delta)}), now=now)


def _evaluation(task: Task, cid: str, loss: float, accuracy: float, examples: int
                ) -> TaskResult:
    return TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id,
                                          num_examples=examples,
                                          metrics={"loss": loss, "accuracy": accuracy}))


def test_every_nth_version_and_the_last_are_evaluated_by_the_next_clients_that_ask() -> None:
    engine = _engine(updates=3, every=2, clients=2)
    _train(engine, "a", 1.0)  # version 1: not evaluated
    assert engine.wants_evaluators == 0 and engine.settled_records() == engine.records
    _train(engine, "a", 1.0)  # version 2: evaluated
    assert engine.wants_evaluators == 2
    e1, e2 = _poll(engine, "b"), _poll(engine, "c")
    assert (e1.kind, e1.round) == (e2.kind, e2.round) == (TaskKind.EVALUATE, 2)
    np.testing.assert_array_equal(engine.model_for(e1.task_id)["w"], [2.0, 2.0])
    assert [r.version for r in engine.settled_records()] == [1]  # 2 waits for its evaluation
    assert engine.submit(_evaluation(e1, "b", 1.0, 0.5, examples=1), now=1.0) \
        is Outcome.EVALUATED
    assert engine.submit(_evaluation(e2, "c", 4.0, 0.9, examples=3), now=1.0) \
        is Outcome.EVALUATED
    record = engine.records[1]
    assert record.eval_clients == 2
    assert record.evaluation == pytest.approx({"loss": (1.0 + 12.0) / 4,
                                               "accuracy": (0.5 + 2.7) / 4})
    assert engine.records[0].evaluation == {} and engine.records[0].eval_clients == 0
    assert [r.version for r in engine.settled_records()] == [1, 2]


def test_evaluation_tasks_take_no_training_slot_and_come_first() -> None:
    engine = _engine(updates=5, every=1, clients=1, concurrency=1)
    _train(engine, "a", 1.0)  # version 1, evaluation open
    evaluation = _poll(engine, "b")  # the first to ask evaluates
    assert evaluation.kind is TaskKind.EVALUATE
    train = _poll(engine, "a")  # the training slot is still free: a trains
    assert train.kind is TaskKind.TRAIN and engine.outstanding == 1
    assert isinstance(engine.poll("c", now=0.0), Wait)  # nothing left for c
    engine2 = _engine(updates=5, every=1, clients=1, concurrency=1)
    _train(engine2, "a", 1.0)
    busy = _poll(engine2, "a")  # the evaluation comes first, even for a trainer
    assert busy.kind is TaskKind.EVALUATE
    assert _poll(engine2, "b").kind is TaskKind.TRAIN  # and takes no training slot


def test_the_run_ends_only_after_the_last_versions_evaluation() -> None:
    engine = _engine(updates=1, every=5, clients=1)
    _train(engine, "a", 1.0)  # the last version: evaluated although 1 is no multiple of 5
    assert engine.trained and not engine.done
    evaluation = _poll(engine, "a")
    assert evaluation.kind is TaskKind.EVALUATE
    idle = engine.poll("b", now=0.0)  # no training after the last step, no second evaluator
    assert isinstance(idle, Wait) and "evaluated" in idle.reason
    engine.submit(_evaluation(evaluation, "a", 0.3, 0.8, examples=2), now=1.0)
    assert engine.done and isinstance(engine.poll("b", now=1.0), Done)
    assert engine.records[-1].evaluation["accuracy"] == pytest.approx(0.8)


def test_an_evaluation_closes_at_its_deadline_with_what_arrived() -> None:
    engine = _engine(updates=1, every=1, clients=3)
    _train(engine, "a", 1.0)
    first = _poll(engine, "b")
    _poll(engine, "c")  # c never answers
    engine.submit(_evaluation(first, "b", 2.0, 0.25, examples=1), now=1.0)
    assert not engine.done
    engine.tick(TIMEOUT_S + 1.0)
    assert engine.done
    assert engine.records[0].eval_clients == 1
    assert engine.records[0].evaluation == pytest.approx({"loss": 2.0, "accuracy": 0.25})


def test_a_declined_or_expired_evaluation_hands_its_place_to_the_next_client() -> None:
    engine = _engine(updates=2, every=1, clients=1)
    _train(engine, "a", 1.0)
    task = _poll(engine, "b")
    engine.submit(TaskResult(header=ResultHeader(client_id="b", task_id=task.task_id,
                                                 num_examples=0, declined_reason="busy")),
                  now=1.0)
    assert engine.wants_evaluators == 1
    again = _poll(engine, "c", now=1.0)
    assert again.kind is TaskKind.EVALUATE and again.round == 1
    engine.release("c")  # c left: its place is free again
    assert engine.wants_evaluators == 1


def test_an_evaluation_result_with_tensors_or_no_examples_changes_nothing() -> None:
    engine = _engine(updates=2, every=1, clients=1)
    _train(engine, "a", 1.0)
    task = _poll(engine, "b")
    with_tensors = TaskResult(header=ResultHeader(client_id="b", task_id=task.task_id,
                                                  num_examples=1, metrics={"loss": 1.0}),
                              tensors={"w": np.zeros(2)})
    no_examples = _evaluation(task, "b", 1.0, 1.0, examples=0)
    for bad in (with_tensors, no_examples):
        with pytest.raises(EngineError) as err:
            engine.submit(bad, now=1.0)
        assert err.value.reason is Reason.INVALID
    assert engine.is_out(task.task_id) and engine.records[0].eval_clients == 0


def test_the_coordinator_reports_a_step_once_its_evaluation_closed() -> None:
    engine = _engine(updates=2, every=1, clients=1)
    facade = BufferedCoordinator(engine, EngineConfig(num_rounds=1))
    before = facade.progress
    _train(engine, "a", 1.0)
    assert facade.pop_new_records() == []  # version 1 is being evaluated
    assert facade.progress != before  # an evaluation opened: waiting clients are woken
    task = _poll(engine, "b")
    assert facade.is_task_open(task.task_id)
    facade.submit(_evaluation(task, "b", 0.5, 0.75, examples=4), now=2.0)
    [record] = facade.pop_new_records()
    assert (record.round, record.loss, record.accuracy, record.eval_clients) == (1, 0.5, 0.75, 1)


def test_evaluations_survive_the_checkpoint() -> None:
    engine = _engine(updates=3, every=1, clients=1)
    _train(engine, "a", 1.0)
    task = _poll(engine, "b")
    engine.submit(_evaluation(task, "b", 0.5, 0.75, examples=4), now=2.0)

    back = buffered_checkpoint_from_bytes(buffered_checkpoint_to_bytes(engine.snapshot()))

    assert back.records == tuple(engine.records)
    assert back.records[0].evaluation == {"loss": 0.5, "accuracy": 0.75}


def test_no_evaluation_unless_asked() -> None:
    engine = BufferedEngine(BufferedConfig(buffer_size=1, concurrency=1, num_updates=1),
                            FedAvg(), {"w": np.zeros(2)})
    _train(engine, "a", 1.0)
    assert engine.done and engine.records[0].eval_clients == 0


def test_an_evaluation_result_is_announced_without_payload() -> None:
    engine = _engine(updates=2, every=1, clients=1)
    _train(engine, "a", 1.0)
    task = _poll(engine, "b")
    header = _evaluation(task, "b", 1.0, 1.0, examples=1).header
    assert engine.expected_spec(header).tensors == ()
    train = _poll(engine, "a")
    assert engine.expected_spec(ResultHeader(client_id="a", task_id=train.task_id,
                                             num_examples=1)) == engine.spec


def test_a_client_evaluates_a_version_once_and_an_evaluation_waits_for_no_more_than_connected(
) -> None:
    engine = _engine(updates=2, every=1, clients=10)
    engine.note_available(2)  # two clients connected
    _train(engine, "a", 1.0)
    first = _poll(engine, "b")
    engine.submit(_evaluation(first, "b", 1.0, 0.5, examples=1), now=1.0)
    assert _poll(engine, "b", now=1.0).kind is TaskKind.TRAIN  # b evaluated version 1 once
    second = _poll(engine, "a", now=1.0)
    assert second.kind is TaskKind.EVALUATE
    engine.submit(_evaluation(second, "a", 3.0, 1.0, examples=1), now=2.0)
    assert engine.records[0].eval_clients == 2  # closed at 2 of 10: only 2 are connected
    assert engine.settled_records() == engine.records[:1]
