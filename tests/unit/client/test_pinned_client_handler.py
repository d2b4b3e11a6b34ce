"""The task handler's results by field: an initialisation result is the app's parameters (its
example count only has to be valid: docs/protocol.md 4.2), a decline carries a reason (a default
when none is given) and no tensors, and is for this task only unless said otherwise, an app's
refusal for this task only is the caller's to answer while one for good becomes a permanent
decline, and evaluation reports the app's loss beside its metrics and sends no tensors. A
secure-aggregation identity must be this client's own. Without a privacy floor a DP app's plan
is not consulted. The control-variate store is the one given, else the app's own (a simulated
client's), else one in memory."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp, TaskHandler
from fedcore.client.app import DeclineTask
from fedcore.protocol.messages import Task, TaskKind, TrainConfig
from fedcore.protocol.params import Params
from fedcore.protocol.specs import EMPTY_SPEC, spec_of

MODEL = {"w": np.arange(3, dtype=np.float32), "b": np.array([[1.5]], np.float64)}


def _task(kind: TaskKind, task_id: str = "t1") -> Task:
    spec = EMPTY_SPEC if kind is TaskKind.INITIALIZE else spec_of(MODEL)
    return Task(round=1, task_id=task_id, kind=kind, train=TrainConfig(), model_spec=spec)


def _app(*, refuse: DeclineTask | None = None) -> FunctionalApp:
    def fit(params: Params, config: TrainConfig) -> FitResult:
        if refuse is not None:
            raise refuse
        for value in params.values():  # trains in place, as apps may
            value += 1
        return FitResult(params=params, num_examples=7)

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        if refuse is not None:
            raise refuse
        return EvalResult(loss=0.75, num_examples=4, metrics={"accuracy": 0.5})

    return FunctionalApp(get_parameters=lambda: dict(MODEL), fit=fit, evaluate=evaluate)


def _model() -> Params:
    return {k: v.copy() for k, v in MODEL.items()}


def test_an_initialisation_result_is_the_apps_parameters_counted_as_one_example() -> None:
    result = TaskHandler(_app(), "c1").handle(_task(TaskKind.INITIALIZE, "t0"), None)

    header = result.header
    assert (header.client_id, header.task_id) == ("c1", "t0")
    assert header.num_examples >= 1  # not a weight; 0 would be refused as no examples
    assert header.declined_reason == "" and header.metrics == {}
    assert header.spec == spec_of(MODEL)
    assert set(result.tensors) == set(MODEL)
    for name, value in MODEL.items():
        np.testing.assert_array_equal(result.tensors[name], value)


def test_a_decline_reports_no_examples_and_is_for_this_task_only_by_default() -> None:
    handler = TaskHandler(_app(), "c1")

    result = handler.decline(_task(TaskKind.TRAIN, "t9"), "battery low")

    header = result.header
    assert (header.client_id, header.task_id) == ("c1", "t9")
    assert result.tensors == {}
    assert header.declined_reason == "battery low" and header.permanent is False
    assert handler.decline(_task(TaskKind.TRAIN), "x", permanent=True).header.permanent is True


def test_a_decline_without_a_reason_still_says_it_declined() -> None:
    header = TaskHandler(_app(), "c1").decline(_task(TaskKind.TRAIN), "").header

    assert header.declined_reason == "declined"  # an empty reason would read as a result


@pytest.mark.parametrize("kind", [TaskKind.TRAIN, TaskKind.EVALUATE])
def test_an_apps_refusal_for_this_task_only_is_raised_to_the_caller(kind: TaskKind) -> None:
    handler = TaskHandler(_app(refuse=DeclineTask("busy")), "c1")

    with pytest.raises(DeclineTask) as refusal:
        handler.handle(_task(kind), _model())

    assert refusal.value.permanent is False and refusal.value.reason == "busy"
    assert handler.trained_examples == 0


@pytest.mark.parametrize("kind", [TaskKind.TRAIN, TaskKind.EVALUATE])
def test_an_apps_refusal_for_good_becomes_a_permanent_decline(kind: TaskKind) -> None:
    handler = TaskHandler(_app(refuse=DeclineTask("budget spent", permanent=True)), "c1")

    result = handler.handle(_task(kind), _model())

    assert result.header.permanent is True
    assert result.header.declined_reason == "budget spent"
    assert result.tensors == {}


def test_an_evaluation_reports_the_loss_beside_the_apps_metrics_and_no_tensors() -> None:
    result = TaskHandler(_app(), "c1").handle(_task(TaskKind.EVALUATE), _model())

    assert result.header.num_examples == 4
    assert result.header.metrics == {"accuracy": 0.5, "loss": 0.75}
    assert result.tensors == {} and result.header.spec == EMPTY_SPEC


def test_a_training_result_is_the_update_from_the_downloaded_model_whatever_the_app_does_in_place(
) -> None:
    handler = TaskHandler(_app(), "c1")
    downloaded = _model()

    result = handler.handle(_task(TaskKind.TRAIN), downloaded)

    assert result.header.num_examples == 7 and handler.trained_examples == 7
    for name, value in MODEL.items():
        np.testing.assert_allclose(result.tensors[name], np.ones_like(value))
        np.testing.assert_array_equal(downloaded[name], value)  # the app trained a copy


def test_evaluating_a_scaffold_model_gives_the_app_the_model_not_the_variates() -> None:
    from fedcore.protocol.scaffold import control_name

    seen: list[Params] = []

    def evaluate(params: Params, config: TrainConfig) -> EvalResult:
        seen.append(params)
        return EvalResult(loss=float(np.sum(params["w"])), num_examples=1)

    app = FunctionalApp(get_parameters=lambda: {"w": np.zeros(3, np.float32)},
                        fit=lambda p, c: FitResult(params=p, num_examples=1), evaluate=evaluate)
    downloaded = {"w": np.array([1.0, 2.0, 3.0], np.float32),
                  control_name("w"): np.full(3, 10.0, np.float32)}
    task = Task(round=1, task_id="e1", kind=TaskKind.EVALUATE, train=TrainConfig(),
                model_spec=spec_of(downloaded))

    result = TaskHandler(app, "c1").handle(task, downloaded)

    assert list(seen[0]) == ["w"]
    np.testing.assert_array_equal(seen[0]["w"], [1.0, 2.0, 3.0])
    assert result.header.metrics["loss"] == 6.0


class _Planner(FunctionalApp):
    """An app that plans local DP-SGD but says nothing of its randomness."""

    def plan_local_dp(self, config: TrainConfig) -> None:
        return None


def _planner(**attributes: object) -> _Planner:
    app = _Planner(get_parameters=lambda: dict(MODEL),
                   fit=lambda p, c: FitResult(params=p, num_examples=1),
                   evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    for name, value in attributes.items():
        setattr(app, name, value)
    return app


def test_secure_rng_refuses_a_dp_app_that_does_not_say_its_randomness_is_secure() -> None:
    with pytest.raises(ValueError, match="secure_rng"):
        TaskHandler(_planner(), "c1", secure_rng=True)  # silence is not a yes
    with pytest.raises(ValueError, match="secure_rng"):
        TaskHandler(_planner(secure_rng=False), "c1", secure_rng=True)

    assert TaskHandler(_planner(secure_rng=True), "c1", secure_rng=True).secure_rng
    assert not TaskHandler(_planner(), "c1").secure_rng  # no secure rng asked: nothing to check


def test_a_secure_aggregation_identity_must_be_this_clients_own() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fedcore.secagg.roster import Roster, SecAggIdentity, public_key

    keys = {cid: Ed25519PrivateKey.generate() for cid in ("c1", "c2")}
    roster = Roster({cid: public_key(k) for cid, k in keys.items()})
    identity = SecAggIdentity("c1", keys["c1"], roster)

    with pytest.raises(ValueError, match="'c1'"):
        TaskHandler(_app(), "c2", identity=identity)
    assert TaskHandler(_app(), "c1", identity=identity).identity is identity


def test_without_a_floor_the_apps_dp_plan_is_not_consulted() -> None:
    class Unplannable(_Planner):
        def plan_local_dp(self, config: TrainConfig) -> None:
            raise ValueError("no noise multiplier reaches the target")

    app = Unplannable(get_parameters=lambda: dict(MODEL),
                      fit=lambda p, c: FitResult(params={k: v + 1 for k, v in p.items()},
                                                 num_examples=2),
                      evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))

    result = TaskHandler(app, "c1").handle(_task(TaskKind.TRAIN), _model())

    assert result.header.declined_reason == "" and result.header.num_examples == 2


class _Holder(FunctionalApp):
    """A simulated client's app: it says where its control variate lives."""

    store: object = None

    @property
    def variate_store(self) -> object:
        return self.store


def _holder(store: object) -> _Holder:
    app = _Holder(get_parameters=lambda: dict(MODEL),
                  fit=lambda p, c: FitResult(params=p, num_examples=1),
                  evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    app.store = store
    return app


def test_the_variate_store_is_the_one_given_else_the_apps_else_one_in_memory() -> None:
    from fedcore.client.scaffold import BlobVariates

    apps_store, given = BlobVariates(), BlobVariates()

    assert TaskHandler(_holder(apps_store), "c1").control_variates is apps_store
    assert TaskHandler(_holder(apps_store), "c1", control_variates=given).control_variates \
        is given
    own = TaskHandler(_holder(None), "c1").control_variates
    assert isinstance(own, BlobVariates) and own is not apps_store and own is not given
