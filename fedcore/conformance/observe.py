"""What the conformance kit sees of a client: every call it makes, every result it sends.

`RecordingEngine` is the library's `RoundEngine` with a record of every request (who called
what, and when), every result header and update it is handed, every refusal it answers, and
one scripted fault: a task's deadline passing just as a chosen client's result arrives (a late
result, docs/protocol.md 4.4).

Calls are told apart by what the gRPC driver (`fedcore.transport.grpc.coordinator_service`)
asks the engine: every request but `Join` is authenticated first, then asks exactly one of
`poll` (GetTask; a held GetTask polls again without authenticating), `model_for`
(DownloadModel), `check_result` (SubmitResult) or `leave` (Leave).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedcore.engine.engine import RoundEngine
from fedcore.engine.errors import EngineError
from fedcore.engine.model import RoundModel
from fedcore.protocol.messages import ResultHeader, TaskKind, TaskReply, TaskResult
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec


@dataclass(frozen=True, slots=True)
class Call:
    """One request as it arrived: `method` is `Join`, `GetTask`, `DownloadModel`,
    `SubmitResult`, `Leave`, or `refused` (its credentials were refused, with `reason`)."""

    at: float
    client_id: str
    method: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Submitted:
    """A result the engine was handed: its header, a copy of its tensors, the task's kind and
    round, the global model it answered (TRAIN), and the retry hint the reply carried."""

    at: float
    header: ResultHeader
    tensors: dict[str, Array]
    kind: TaskKind | None
    round: int
    global_params: dict[str, Array] | None
    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """A result (header) the engine refused, with why."""

    at: float
    client_id: str
    task_id: str
    reason: str


@dataclass
class _Faults:
    hold_after: int | None = None  # open no training round after this one
    forget: set[str] = field(default_factory=set)  # forgotten at their next request
    late_for: str | None = None  # the next result of this client arrives after its deadline
    lates: list[str] = field(default_factory=list)  # task ids made late


class RecordingEngine(RoundEngine):
    """A `RoundEngine` that records what it is asked (`calls`, `submitted`, `refusals`) and can
    make a chosen client's next result late (`make_late`). Called on the server's loop only;
    the kit reads from its own thread (under a lock)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._pending: dict[str, float] = {}  # authenticated, action not yet asked
        self.submitted: list[Submitted] = []
        self.refusals: list[Refusal] = []
        self._faults = _Faults()

    def calls(self, client_id: str, method: str | None = None, *, since: float = 0.0,
              until: float = float("inf")) -> list[Call]:
        """`client_id`'s requests (of `method`, when given) that arrived in [since, until)."""
        with self._lock:
            return [c for c in self._calls if c.client_id == client_id
                    and (method is None or c.method == method) and since <= c.at < until]

    def _note(self, client_id: str, method: str, now: float, reason: str = "") -> None:
        with self._lock:
            self._calls.append(Call(now, client_id, method, reason))

    def _acted(self, client_id: str, method: str) -> None:
        at = self._pending.pop(client_id, None)
        if at is not None:
            self._note(client_id, method, at)

    def join(self, client_id: str, *, now: float, **kwargs: Any) -> bytes:
        self._note(client_id, "Join", now)
        try:
            return super().join(client_id, now=now, **kwargs)
        except EngineError as err:
            self._note(client_id, "refused", now, str(err))
            raise

    def forget(self, client_id: str) -> None:
        """Forget `client_id` just before its next authenticated request (a coordinator that
        lost it: the request is refused with NOT_FOUND, docs/protocol.md 6)."""
        self._faults.forget.add(client_id)

    def authenticate(self, client_id: str, session: bytes, *, now: float) -> None:
        if client_id in self._faults.forget:
            self._faults.forget.discard(client_id)
            self._registry.remove(client_id)
        try:
            super().authenticate(client_id, session, now=now)
        except EngineError as err:
            self._note(client_id, "refused", now, str(err))
            raise
        self._pending[client_id] = now

    def poll(self, client_id: str, *, now: float) -> TaskReply:
        self._acted(client_id, "GetTask")
        return super().poll(client_id, now=now)

    def model_for(self, client_id: str, task_id: str, *, now: float) -> RoundModel:
        self._acted(client_id, "DownloadModel")
        return super().model_for(client_id, task_id, now=now)

    def leave(self, client_id: str, *, now: float) -> None:
        self._acted(client_id, "Leave")
        super().leave(client_id, now=now)

    def hold_after(self, round_number: int | None) -> None:
        """Open no training round after `round_number` until called with None (clients are
        told to wait); e.g. to stop the coordinator at a known round boundary."""
        self._faults.hold_after = round_number

    def _try_start(self, now: float) -> None:
        held = self._faults.hold_after
        if held is not None and self.params is not None and self.round_number >= held:
            return
        super()._try_start(now)

    def make_late(self, client_id: str) -> None:
        """The next TRAIN result header of `client_id` arrives just after its task's deadline."""
        self._faults.late_for = client_id

    @property
    def made_late(self) -> list[str]:
        """Task ids whose deadline the kit let pass as a result arrived."""
        return list(self._faults.lates)

    def check_result(self, header: ResultHeader, *, now: float) -> ModelSpec:
        self._acted(header.client_id, "SubmitResult")
        task = self._task
        if (self._faults.late_for == header.client_id and not header.declined_reason
                and task is not None and task.task_id == header.task_id
                and task.kind is TaskKind.TRAIN):
            self._faults.late_for = None
            self._faults.lates.append(task.task_id)
            self.tick(max(now, task.deadline))  # the deadline passes: the round closes
        try:
            return super().check_result(header, now=now)
        except EngineError as err:
            self.refusals.append(Refusal(now, header.client_id, header.task_id, str(err)))
            raise

    def submit(self, result: TaskResult, *, now: float) -> None:
        task = self._task
        kind = task.kind if task is not None and task.task_id == result.header.task_id else None
        number = task.number if kind is not None and task is not None else -1
        model = task.model if kind is not None and task is not None else None
        global_params = ({k: np.array(v, copy=True) for k, v in model.params.items()}
                         if model is not None else None)
        tensors = {k: np.array(v, copy=True) for k, v in result.tensors.items()}
        try:
            super().submit(result, now=now)
        except EngineError as err:
            self.refusals.append(Refusal(now, result.header.client_id, result.header.task_id,
                                         str(err)))
            raise
        hint = self.retry_after(result.header.client_id, now=now) if result.header.declined_reason else 0.0
        self.submitted.append(Submitted(now, result.header, tensors, kind, number, global_params,
                                        hint))
