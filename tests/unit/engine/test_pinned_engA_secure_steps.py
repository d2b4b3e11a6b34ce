"""Secure FedBuff's replies to clients already engaged, pinned: a client waiting for its group
to fill, or a member waiting for the others, is told to wait and holds one slot (asking again
never joins it twice); each group's training step carries the strategy's settings for the
round its version builds (version + 1); `activity` moves when a group forms and its protocol
advances; a protocol message with a payload of the wrong layout is refused as INVALID and
leaves the group's protocol where it was."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine.buffered import BufferedConfig, Outcome
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import Task, TaskKind, TaskResult, TrainConfig, Wait
from fedcore.protocol.specs import spec_of
from fedcore.strategy import FedAvg

from .test_buffered_secure import DIM, SECURE, Clients, _engine


class _RoundTagged(FedAvg):
    """FedAvg whose local epochs name the round they were asked for."""

    def train_config(self, round_number: int) -> TrainConfig:
        return TrainConfig(local_epochs=round_number, batch_size=self.batch_size,
                           learning_rate=self.learning_rate)


def test_a_client_waiting_for_its_group_to_fill_waits_and_holds_one_slot() -> None:
    engine = _engine(k=3, concurrency=6)
    for _ in range(3):
        reply = engine.poll("a", now=1.0)
        assert isinstance(reply, Wait)
    assert engine.forming == ("a",) and engine.outstanding == 1
    assert isinstance(engine.poll("b", now=1.0), Wait)
    assert engine.forming == ("a", "b") and engine.open_groups == 0
    task = engine.poll("c", now=1.0)  # the third distinct client fills the group
    assert isinstance(task, Task) and engine.members_of(task.task_id) == {"a", "b", "c"}
    assert engine.forming == () and engine.outstanding == 3


def test_a_member_waiting_for_the_others_waits_in_its_group_and_joins_no_other() -> None:
    engine = _engine(k=2, concurrency=4)
    clients = Clients(engine, {"a": 0.1, "b": 0.2})
    engine.poll("a", now=0.0)
    task = engine.poll("b", now=0.0)
    assert isinstance(task, Task)
    assert clients.answer("b", task) is Outcome.BUFFERED  # b trained and advertised its keys
    for _ in range(2):  # b has nothing to do until a advertises
        reply = engine.poll("b", now=1.0)
        assert isinstance(reply, Wait) and "sbuf-1" in reply.reason
    assert engine.forming == () and engine.open_groups == 1 and engine.outstanding == 2
    assert engine.clients_out() == {"a", "b"}


def test_each_groups_training_step_carries_the_settings_of_the_round_it_builds() -> None:
    config = BufferedConfig(buffer_size=2, concurrency=4, num_updates=3)
    engine = SecureBufferedEngine(config, _RoundTagged(), {"w": np.zeros(DIM, np.float32)},
                                  SECURE)
    clients = Clients(engine, {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4})
    engine.poll("a", now=0.0)
    first = engine.poll("b", now=0.0)
    assert isinstance(first, Task) and first.kind is TaskKind.TRAIN
    assert first.round == 1 and first.train.local_epochs == 1
    clients.finish(["a", "b"], "sbuf-1")
    assert engine.version == 1
    engine.poll("c", now=1.0)
    second = engine.poll("d", now=1.0)  # a group opened on version 1 builds version 2
    assert isinstance(second, Task) and second.kind is TaskKind.TRAIN
    assert second.round == 2 and second.train.local_epochs == 2
    again = engine.poll("c", now=1.0)
    assert isinstance(again, Task) and again.train.local_epochs == 2


def test_activity_moves_when_a_group_forms_opens_and_advances() -> None:
    engine = _engine(k=2, concurrency=4)
    clients = Clients(engine, {"a": 0.1, "b": 0.2})
    seen = [engine.activity]
    engine.poll("a", now=0.0)
    seen.append(engine.activity)
    task = engine.poll("b", now=0.0)
    assert isinstance(task, Task)
    seen.append(engine.activity)
    assert len(set(seen)) == 3  # nobody -> one forming -> one group in its key phase
    clients.answer("b", task)
    assert engine.activity == seen[-1]  # one of two advertised: the phase has not moved
    a_task = engine.poll("a", now=0.0)
    assert isinstance(a_task, Task)
    clients.answer("a", a_task)  # both advertised: the protocol moved to its next phase
    assert engine.activity not in seen


def test_a_payload_of_the_wrong_layout_is_invalid_and_leaves_the_protocol_as_it_was() -> None:
    engine = _engine(k=2, concurrency=2)
    clients = Clients(engine, {"a": 0.1, "b": 0.2})
    engine.poll("a", now=0.0)
    task = engine.poll("b", now=0.0)
    assert isinstance(task, Task)
    params = {k: v.copy() for k, v in engine.model_for(task.task_id).items()}
    answer = clients.handlers["b"].handle(task, params)
    assert not answer.tensors  # advertising keys carries no payload
    before = engine.activity
    bad = TaskResult(header=answer.header, tensors={"w": np.zeros(DIM, np.float32)})
    with pytest.raises(EngineError) as refused:
        engine.submit(bad, now=0.0)
    assert refused.value.reason is Reason.INVALID
    assert engine.activity == before and engine.open_groups == 1 and engine.version == 0
    assert engine.submit(answer, now=0.0) is Outcome.BUFFERED  # the well-formed one is taken


def test_the_spec_the_service_expects_is_each_protocol_messages_own_payload() -> None:
    engine = _engine(k=2, concurrency=2, updates=1)
    clients = Clients(engine, {"a": 0.1, "b": 0.2})
    engine.poll("a", now=0.0)
    engine.poll("b", now=0.0)  # the group opens
    seen = []
    while engine.is_out("sbuf-1"):
        answered = False
        for cid in "ab":
            task = clients.poll(cid)
            if task is None or not engine.is_out("sbuf-1"):
                continue
            params = None
            if task.kind is TaskKind.TRAIN:
                params = {k: v.copy() for k, v in engine.model_for(task.task_id).items()}
            answer = clients.handlers[cid].handle(task, params)
            assert engine.expected_spec(answer.header) == spec_of(answer.tensors)
            seen.append(bool(answer.tensors))
            engine.submit(answer, now=0.0)
            answered = True
        assert answered
    assert engine.version == 1
    assert True in seen and False in seen  # masked vectors and payload-free messages alike
