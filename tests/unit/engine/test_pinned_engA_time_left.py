"""The time a FedBuff task tells its client it has left, pinned under a second: a training
task, an evaluation task and a secure group's step each report exactly what is left to their
deadline (the client stops work by it), however close the deadline is."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine.buffered import BufferedConfig, BufferedEngine
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult
from fedcore.strategy import FedAvg

from .test_buffered_secure import DIM, SECURE


def _task(engine: BufferedEngine, cid: str, now: float) -> Task:
    reply = engine.poll(cid, now=now)
    assert isinstance(reply, Task), reply
    return reply


def test_a_training_task_reports_the_fraction_of_a_second_left() -> None:
    config = BufferedConfig(buffer_size=1, concurrency=1, num_updates=1, task_timeout_s=0.5)
    engine = BufferedEngine(config, FedAvg(), {"w": np.zeros(1)})
    first = _task(engine, "a", now=40.0)
    assert first.kind is TaskKind.TRAIN and first.time_left_s == pytest.approx(0.5)
    again = _task(engine, "a", now=40.375)
    assert again.task_id == first.task_id and again.time_left_s == pytest.approx(0.125)


def test_an_evaluation_task_reports_the_fraction_of_a_second_left() -> None:
    config = BufferedConfig(buffer_size=1, concurrency=1, num_updates=1, task_timeout_s=0.75,
                            eval_every=1, eval_clients=1)
    engine = BufferedEngine(config, FedAvg(), {"w": np.zeros(1)})
    train = _task(engine, "a", now=40.0)
    engine.submit(TaskResult(header=ResultHeader(client_id="a", task_id=train.task_id,
                                                 num_examples=1), tensors={"w": np.ones(1)}),
                  now=40.25)
    ev = _task(engine, "e", now=40.25)
    assert ev.kind is TaskKind.EVALUATE and ev.time_left_s == pytest.approx(0.75)
    again = _task(engine, "e", now=40.75)
    assert again.task_id == ev.task_id and again.time_left_s == pytest.approx(0.25)


def test_a_secure_groups_step_reports_the_fraction_of_a_second_left() -> None:
    config = BufferedConfig(buffer_size=2, concurrency=2, num_updates=1, task_timeout_s=0.5)
    engine = SecureBufferedEngine(config, FedAvg(), {"w": np.zeros(DIM, np.float32)}, SECURE)
    engine.poll("a", now=40.0)
    step = _task(engine, "b", now=40.0)
    assert step.time_left_s == pytest.approx(0.5)
    again = _task(engine, "a", now=40.25)
    assert again.task_id == step.task_id and again.time_left_s == pytest.approx(0.25)
