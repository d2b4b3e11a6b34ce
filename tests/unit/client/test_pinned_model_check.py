"""A SCAFFOLD run's model carries the server control variates (`scaffold.c/<name>`) beside the
parameters: the handler's model check compares only the parameters with the app's own, so a
client of the right model is not refused, and one of another model still is."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp, TaskHandler
from fedcore.client.handler import ModelMismatch
from fedcore.protocol.messages import Task, TaskKind, TrainConfig
from fedcore.protocol.params import Params
from fedcore.protocol.specs import spec_of
from fedcore.strategy.scaffold import with_control_variate


def _handler(own: Params) -> TaskHandler:
    app = FunctionalApp(get_parameters=lambda: dict(own),
                        fit=lambda p, c: FitResult(params=p, num_examples=1),
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    return TaskHandler(app, "c1")


def _task(model: Params) -> Task:
    return Task(round=1, task_id="t1", kind=TaskKind.TRAIN, train=TrainConfig(),
                model_spec=spec_of(model))


def test_the_control_variates_are_left_out_of_the_model_check() -> None:
    own = {"w": np.zeros(3, np.float32)}
    run = with_control_variate(own)
    assert len(run) == 2
    _handler(own).check_model(_task(run))  # no ModelMismatch
    with pytest.raises(ModelMismatch):
        _handler({"w": np.zeros(4, np.float32)}).check_model(_task(run))


@pytest.mark.parametrize("kind", [TaskKind.TRAIN, TaskKind.EVALUATE])
def test_a_task_that_needs_the_model_is_refused_without_it_before_the_app_runs(
        kind: TaskKind) -> None:
    calls: list[str] = []
    own = {"w": np.zeros(3, np.float32)}

    def fit(p: Params, c: TrainConfig) -> FitResult:
        calls.append("fit")
        return FitResult(params=p, num_examples=1)

    def evaluate(p: Params, c: TrainConfig) -> EvalResult:
        calls.append("evaluate")
        return EvalResult(loss=0.0, num_examples=1)

    handler = TaskHandler(FunctionalApp(get_parameters=lambda: dict(own), fit=fit,
                                        evaluate=evaluate), "c1")
    task = Task(round=1, task_id="t1", kind=kind, train=TrainConfig(), model_spec=spec_of(own))
    with pytest.raises(ValueError):
        handler.handle(task, None)
    assert calls == [] and handler.trained_examples == 0
