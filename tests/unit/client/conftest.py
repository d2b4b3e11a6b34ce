"""A scripted, in-memory stand-in for the client's connection, and a small NumPy app."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp, TrainConfig
from fedcore.protocol.messages import Done, Task, TaskKind, TaskReply, TaskResult, Wait
from fedcore.protocol.params import Array, Params
from fedcore.protocol.specs import spec_of

MODEL = {"w": np.zeros(3, np.float32)}


def train_task(n: int = 1, *, max_train_s: float = 0.0, time_left_s: float = 60.0) -> Task:
    return Task(round=n, task_id=f"t{n}", kind=TaskKind.TRAIN, time_left_s=time_left_s,
                train=TrainConfig(max_train_s=max_train_s), model_spec=spec_of(MODEL))


@dataclass
class FakeConnection:
    """Answers get_task from `replies` (then Done); records what the client sent."""

    replies: list[TaskReply | Callable[[], TaskReply]]
    client_id: str = "c1"
    session: bytes = b""
    joins: int = 0
    leaves: int = 0
    closed: bool = False
    polls: int = 0
    submitted: list[TaskResult] = field(default_factory=list)
    submit_error: Exception | None = None
    events: list[str] = field(default_factory=list)

    @property
    def joined(self) -> bool:
        return bool(self.session)

    def join(self, properties: dict[str, str] | None = None, stop: object = None) -> None:
        self.joins += 1
        self.session = b"s"
        self.events.append("join")

    def get_task(self, stop: threading.Event | None = None) -> TaskReply:
        self.polls += 1
        if not self.replies:
            return Done(reason="over")
        reply = self.replies.pop(0)
        return reply() if callable(reply) else reply

    def download(self, task: Task, stop: threading.Event | None = None) -> dict[str, Array]:
        return {k: v.copy() for k, v in MODEL.items()}

    def submit(self, result: TaskResult, stop: threading.Event | None = None) -> None:
        self.events.append("submit")
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append(result)

    def cancel_current(self) -> None:
        pass

    def leave(self) -> None:
        if self.session:
            self.leaves += 1
            self.session = b""
            self.events.append("leave")

    def close(self) -> None:
        self.closed = True


def add_one(params: Params, config: TrainConfig) -> FitResult:
    return FitResult(params={k: v + 1 for k, v in params.items()}, num_examples=5,
                     metrics={"loss": 0.5})


def make_app(fit: Callable[[Params, TrainConfig], FitResult] = add_one) -> FunctionalApp:
    return FunctionalApp(
        get_parameters=lambda: dict(MODEL), fit=fit,
        evaluate=lambda p, c: EvalResult(loss=1.0, num_examples=5),
    )


@pytest.fixture
def wait_reply() -> Wait:
    return Wait(retry_after_s=0.0)
