"""The initial-model flow (docs/protocol.md 4.2): parameters if the app has them, else a decline."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fedcore.client import ClientOptions, EvalResult, FunctionalApp
from fedcore.client.loop import ClientLoop
from fedcore.protocol.messages import Task, TaskKind

from .conftest import FakeConnection, add_one

pytestmark = pytest.mark.timeout(30)
INITIALIZE = Task(round=0, task_id="t0", kind=TaskKind.INITIALIZE, time_left_s=60.0)


def app_with(params: dict[str, np.ndarray]) -> FunctionalApp:
    return FunctionalApp(get_parameters=lambda: params, fit=add_one,
                         evaluate=lambda p, c: EvalResult(loss=1.0, num_examples=1))


def run(app: FunctionalApp) -> FakeConnection:
    conn = FakeConnection([INITIALIZE])
    ClientLoop(app, conn, stop=threading.Event(), options=ClientOptions()).run()
    return conn


def test_a_client_with_parameters_sends_them() -> None:
    conn = run(app_with({"w": np.arange(3, dtype=np.float32)}))

    (result,) = conn.submitted
    assert not result.header.declined_reason
    np.testing.assert_array_equal(result.tensors["w"], [0, 1, 2])


def test_a_client_without_parameters_declines_instead_of_sending_nothing() -> None:
    conn = run(app_with({}))

    (result,) = conn.submitted
    assert "no initial parameters" in result.header.declined_reason
    assert not result.header.permanent and result.tensors == {}
