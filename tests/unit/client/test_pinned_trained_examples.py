"""`TaskHandler.trained_examples`, which the simulator reads as the examples of a client's last
local training (a secure result's header hides them): none before any training, the app's
count after a training, and unchanged by an evaluation or a decline."""

from __future__ import annotations

import numpy as np

from fedcore.client import EvalResult, FitResult, FunctionalApp, TaskHandler
from fedcore.protocol.messages import Task, TaskKind, TrainConfig
from fedcore.protocol.params import Params
from fedcore.protocol.specs import spec_of

from .conftest import MODEL


def _task(kind: TaskKind, task_id: str = "t1") -> Task:
    return Task(round=1, task_id=task_id, kind=kind, train=TrainConfig(),
                model_spec=spec_of(MODEL))


def _handler(examples: int) -> TaskHandler:
    def fit(params: Params, config: TrainConfig) -> FitResult:
        return FitResult(params={k: v + 1 for k, v in params.items()}, num_examples=examples)

    app = FunctionalApp(get_parameters=lambda: dict(MODEL), fit=fit,
                        evaluate=lambda p, c: EvalResult(loss=1.0, num_examples=99))
    return TaskHandler(app, "c1")


def test_no_examples_are_counted_before_any_training() -> None:
    handler = _handler(examples=7)
    assert handler.trained_examples == 0
    handler.handle(_task(TaskKind.EVALUATE), {k: v.copy() for k, v in MODEL.items()})
    assert handler.trained_examples == 0  # an evaluation trains nothing


def test_the_last_trainings_examples_are_kept() -> None:
    handler = _handler(examples=7)
    result = handler.handle(_task(TaskKind.TRAIN), {k: v.copy() for k, v in MODEL.items()})
    assert handler.trained_examples == 7 == result.header.num_examples
    handler.handle(_task(TaskKind.EVALUATE, "t2"), {k: v.copy() for k, v in MODEL.items()})
    handler.decline(_task(TaskKind.TRAIN, "t3"), "busy")
    assert handler.trained_examples == 7
    np.testing.assert_array_equal(result.tensors["w"], np.ones_like(MODEL["w"]))
