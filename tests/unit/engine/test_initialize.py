"""With the operator's opt-in (no initial parameters), the first task asks one client for them."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import EngineError, Phase, Reason, RoundEngine
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec, TensorSpec, spec_of
from fedcore.strategy import FedAvg

from .conftest import engine_config


def test_first_task_is_initialize_for_exactly_one_client(make_harness) -> None:
    h = make_harness(initial=None)

    tasks = h.tasks()

    assert [t.kind for t in tasks.values()] == [TaskKind.INITIALIZE]
    assert h.engine.phase is Phase.INITIALIZING
    assert h.engine.params is None


def test_initialize_task_carries_no_model(make_harness) -> None:
    h = make_harness(initial=None)
    ((cid, task),) = h.tasks().items()

    assert task.model_spec == EMPTY_SPEC
    with pytest.raises(EngineError) as err:
        h.download(cid, task)
    # FAILED_PRECONDITION on the wire (docs/protocol.md 3.3): the task, not the request, is why
    assert err.value.reason is Reason.NOT_ASSIGNED and "INITIALIZE" in str(err.value)


def test_initial_params_from_a_client_become_the_model(make_harness, model) -> None:
    h = make_harness(initial=None)
    ((cid, task),) = h.tasks().items()

    h.submit(cid, task, model)

    assert h.engine.params is not None
    assert {k: v.tobytes() for k, v in h.engine.params.items()} == {
        k: v.tobytes() for k, v in model.items()
    }


def test_training_starts_after_initialization(make_harness, model) -> None:
    h = make_harness(initial=None, clients=3)
    ((cid, task),) = h.tasks().items()

    h.submit(cid, task, model)

    assert h.engine.phase is Phase.TRAINING
    assert {t.kind for t in h.tasks().values()} == {TaskKind.TRAIN}


def test_round_numbers_start_at_one_after_initialization(make_harness, model) -> None:
    h = make_harness(initial=None)
    ((cid, task),) = h.tasks().items()
    assert task.round == 0

    h.submit(cid, task, model)

    assert {t.round for t in h.tasks().values()} == {1}


def test_empty_initial_params_are_refused(make_harness) -> None:
    h = make_harness(initial=None)
    ((cid, task),) = h.tasks().items()

    with pytest.raises(EngineError) as err:
        h.submit(cid, task, {})

    assert err.value.reason is Reason.INVALID
    assert h.engine.params is None


def test_initial_params_larger_than_the_limit_are_refused(make_harness, model) -> None:
    h = make_harness(initial=None, max_payload_bytes=8)
    ((cid, task),) = h.tasks().items()
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.submit(cid, task, model)  # 12 bytes

    assert err.value.reason is Reason.TOO_LARGE
    assert h.snapshot() == before


def test_announced_spec_whose_size_overflows_int64_is_too_large(make_harness) -> None:
    h = make_harness(initial=None)
    ((cid, task),) = h.tasks().items()
    huge = ModelSpec(tensors=(TensorSpec(name="w", dtype=np.dtype("float32"), shape=(2**62, 4)),))

    with pytest.raises(EngineError) as err:
        h.engine.check_result(_header(cid, task.task_id, huge), now=h.now)

    assert err.value.reason is Reason.TOO_LARGE


def test_failed_initialization_is_asked_again_after_a_backoff(make_harness) -> None:
    h = make_harness(initial=None, clients=1, retry_after_s=1.0)
    ((_, first),) = h.tasks().items()

    h.advance(61.0)  # the round deadline: the client failed the task
    assert h.tasks() == {}
    h.advance(1.0)
    ((_, second),) = h.tasks().items()

    assert second.kind is TaskKind.INITIALIZE and second.task_id != first.task_id


def test_an_engine_needs_the_operators_model_or_the_opt_in(model) -> None:
    config = engine_config()
    with pytest.raises(ValueError, match="initial_from_client"):
        RoundEngine(config, FedAvg())
    with pytest.raises(ValueError, match="exclude each other"):
        RoundEngine(config, FedAvg(), initial_params=model, initial_from_client=True)


def test_operators_parameters_that_do_not_match_the_model_spec_are_refused(model) -> None:
    other = ModelSpec(tensors=(TensorSpec(name="w", dtype=np.dtype("float32"), shape=(5,)),))

    with pytest.raises(ValueError, match="model spec"):
        RoundEngine(engine_config(), FedAvg(), initial_params=model, model_spec=other)


def test_a_pinned_spec_travels_with_the_initialize_task_and_refuses_other_layouts(
    model
) -> None:
    # arrange
    spec = spec_of(model)
    engine = RoundEngine(engine_config(), FedAvg(), initial_from_client=True, model_spec=spec)
    session = engine.join("stranger", now=0.0)
    engine.tick(0.0)
    engine.authenticate("stranger", session, now=0.0)
    task = engine.poll("stranger", now=0.0)
    assert isinstance(task, Task) and task.model_spec == spec
    five = {"w": np.zeros(5, np.float32)}

    # act
    with pytest.raises(EngineError) as err:
        engine.submit(TaskResult(header=_header("stranger", task.task_id, spec_of(five)),
                                 tensors=five), now=0.0)

    # assert
    assert err.value.reason is Reason.INVALID and "model spec" in str(err.value)
    assert engine.params is None
    engine.submit(TaskResult(header=_header("stranger", task.task_id, spec),
                             tensors={k: v.copy() for k, v in model.items()}), now=0.0)
    assert engine.params is not None and spec_of(engine.params) == spec


def _header(cid: str, task_id: str, spec: ModelSpec) -> ResultHeader:
    return ResultHeader(client_id=cid, task_id=task_id, num_examples=1, spec=spec)
