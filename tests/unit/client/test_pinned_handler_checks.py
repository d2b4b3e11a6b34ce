"""The task handler's checks that coverage of the client tests found unexercised: a model that
does not match the run's is refused before training, an app whose parameters do not match after
fit() is an app error, an integer change the dtype cannot carry is declined, and an app that
cannot say its parameters is taken on trust. Each refusal by type; nothing is sent."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import ClientAppError, EvalResult, FitResult, FunctionalApp, TaskHandler
from fedcore.client.app import DeclineTask
from fedcore.client.handler import ModelMismatch
from fedcore.protocol.messages import Task, TaskKind, TrainConfig
from fedcore.protocol.params import Params
from fedcore.protocol.specs import spec_of


def _task(model: Params) -> Task:
    return Task(round=1, task_id="t1", kind=TaskKind.TRAIN, train=TrainConfig(),
                model_spec=spec_of(model))


def _app(own: Params, fitted: Params) -> FunctionalApp:
    calls: list[int] = []

    def fit(params: Params, config: TrainConfig) -> FitResult:
        calls.append(1)
        return FitResult(params=fitted, num_examples=3, metrics={})

    app = FunctionalApp(get_parameters=lambda: dict(own), fit=fit,
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1, metrics={}))
    app.calls = calls  # type: ignore[attr-defined]
    return app


def test_a_run_whose_model_is_not_the_apps_is_refused_before_training() -> None:
    run_model = {"w": np.zeros(3, np.float32)}
    app = _app({"w": np.zeros(4, np.float32)}, run_model)
    handler = TaskHandler(app, "c1")

    with pytest.raises(ModelMismatch):
        handler.check_model(_task(run_model))
    handler.check_model(_task({"w": np.zeros(4, np.float32)}))  # its own layout passes


def test_an_app_that_cannot_say_its_parameters_is_taken_on_trust() -> None:
    def no_params() -> Params:
        raise RuntimeError("receives its model from the coordinator")

    app = FunctionalApp(get_parameters=no_params,
                        fit=lambda p, c: FitResult(params=p, num_examples=1, metrics={}),
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1, metrics={}))

    TaskHandler(app, "c1").check_model(_task({"w": np.zeros(2)}))  # no error


def test_fit_returning_another_layout_is_an_app_error() -> None:
    model = {"w": np.zeros(3, np.float32)}
    handler = TaskHandler(_app(model, {"w": np.zeros(5, np.float32)}), "c1")

    with pytest.raises(ClientAppError):
        handler.handle(_task(model), {k: v.copy() for k, v in model.items()})


def test_an_integer_change_its_dtype_cannot_carry_is_declined() -> None:
    model = {"n": np.array([-128], np.int8)}
    handler = TaskHandler(_app(model, {"n": np.array([127], np.int8)}), "c1")

    with pytest.raises(DeclineTask) as refusal:
        handler.handle(_task(model), {k: v.copy() for k, v in model.items()})
    assert not refusal.value.permanent  # this task only


def test_an_integer_change_that_fits_is_sent() -> None:
    model = {"n": np.array([-100], np.int8)}
    handler = TaskHandler(_app(model, {"n": np.array([27], np.int8)}), "c1")

    result = handler.handle(_task(model), {k: v.copy() for k, v in model.items()})

    assert result.header.declined_reason == ""
    assert int(result.tensors["n"].astype(np.int8)[0]) == 127


def test_a_dp_task_the_app_cannot_plan_is_declined_for_good_untrained() -> None:
    from fedcore.client.floor import LocalDPPlan, PrivacyFloor

    model = {"w": np.zeros(3, np.float32)}

    class Unplannable(FunctionalApp):
        def plan_local_dp(self, config: TrainConfig) -> LocalDPPlan | None:
            raise ValueError("no noise multiplier reaches the target epsilon")

    fits: list[int] = []

    def fit(params: Params, config: TrainConfig) -> FitResult:
        fits.append(1)
        return FitResult(params=params, num_examples=1, metrics={})

    app = Unplannable(get_parameters=lambda: dict(model), fit=fit,
                      evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1, metrics={}))
    handler = TaskHandler(app, "c1", floor=PrivacyFloor())

    result = handler.handle(_task(model), {k: v.copy() for k, v in model.items()})

    assert result.header.permanent and result.header.declined_reason
    assert result.tensors == {} and fits == []
