"""The SDK waits as long as a SubmitReply's retry hint asks before it polls again."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from fedcore.client import ClientOptions, DeclineTask, FitResult, TrainConfig
from fedcore.client.loop import ClientLoop
from fedcore.protocol.messages import SubmitReply, TaskResult
from fedcore.protocol.params import Params

from .conftest import FakeConnection, make_app, train_task

pytestmark = pytest.mark.timeout(30)


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded (never set by the test)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


@dataclass
class HintingConnection(FakeConnection):
    hint: float = 0.0

    def submit(self, result: TaskResult, stop: threading.Event | None = None) -> SubmitReply:
        super().submit(result, stop)
        return SubmitReply(retry_after_s=self.hint)


def decline(params: Params, config: TrainConfig) -> FitResult:
    raise DeclineTask("busy")


def test_after_a_decline_the_client_waits_the_hint_before_polling_again() -> None:
    conn = HintingConnection([train_task(1)], hint=7.5)
    stop = RecordingStop()

    ClientLoop(make_app(fit=decline), conn, stop=stop, options=ClientOptions()).run()

    assert conn.submitted[0].header.declined_reason == "busy"
    assert 7.5 in stop.waits
    assert conn.polls == 2  # then it asked again (and heard Done)


def test_a_zero_hint_after_a_result_means_poll_at_once() -> None:
    conn = HintingConnection([train_task(1)], hint=0.0)
    stop = RecordingStop()

    ClientLoop(make_app(), conn, stop=stop, options=ClientOptions()).run()

    assert not conn.submitted[0].header.declined_reason
    assert stop.waits == []
    assert conn.polls == 2
