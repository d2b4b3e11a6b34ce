"""The client's connection loop: join, poll, download, train, report; leave when not eligible.

One `ClientLoop` serves one coordinator on the thread that calls `run()`. The app's
`fit`/`evaluate` runs on a short-lived worker thread, so the loop can give up on a task that
outlives its time limit, and leave at once when stopped; the worker is never killed: the loop
waits for the app to return before it ends (or before it takes more work).

The loop installs no signal handlers and configures no logging.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fedcore.client.app import ClientApp, ClientAppError, DeclineTask
from fedcore.client.connection_errors import (
    ClientRejected,
    Disconnected,
    SessionLost,
    StopRequested,
    TaskRefused,
    TransportError,
    Unreachable,
)
from fedcore.client.events import (
    Callbacks,
    ClientPhase,
    ClientStatus,
    Refused,
    RefusedBy,
    Reported,
    Selected,
    Trained,
)
from fedcore.client.floor import PrivacyFloor
from fedcore.client.handler import ModelMismatch, TaskHandler, limit_train_time
from fedcore.client.scaffold import BlobVariates
from fedcore.client.state import ResumeInfo, StateDir
from fedcore.compression.codec import Compression, Compressor, Kind
from fedcore.errors import FedcoreError
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import (
    Done,
    SubmitReply,
    Task,
    TaskKind,
    TaskReply,
    TaskResult,
    Wait,
)
from fedcore.protocol.params import Array
from fedcore.secagg.roster import SecAggIdentity

log = logging.getLogger(__name__)

WORKER_POLL_S = 0.05


class ClientError(FedcoreError, RuntimeError):
    """The client cannot go on (e.g. the coordinator refused its credentials)."""


class Connection(Protocol):
    """What the loop needs from a transport (`GrpcConnection` is the real one).

    A failed call raises a `fedcore.client.connection_errors.TransportError` subtype, which says what
    the failure means to the client; a call abandoned because `stop` was set raises
    `StopRequested`.
    """

    client_id: str
    session: bytes

    @property
    def joined(self) -> bool: ...
    def join(
        self, properties: dict[str, str] | None = None, stop: threading.Event | None = None
    ) -> None: ...
    def get_task(self, stop: threading.Event | None = None) -> TaskReply: ...
    def download(self, task: Task, stop: threading.Event | None = None) -> dict[str, Array]: ...
    def submit(
        self, result: TaskResult, stop: threading.Event | None = None
    ) -> SubmitReply | None: ...
    def cancel_current(self) -> None: ...
    def leave(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """How a client behaves, apart from where it connects.

    Args:
        eligible: asked before every request for work; while it returns False (or raises),
            the client leaves the coordinator, so it is not selected, and asks again every
            `eligibility_check_s`.
        eligibility_check_s: how often to ask `eligible` while it says no.
        max_train_s: the client's own cap on one task's local work (0: none); the app sees
            the tightest of this, the coordinator's limit and the task deadline as
            `config.max_train_s`.
        train_grace_s: how long past that limit the client waits for the app before it
            declines the task (the app's thread is left to finish; no new task starts before).
        max_reconnect_s: give up after this long without reaching the coordinator.
        properties: facts about this client shown to the coordinator's operator.
        callbacks: functions called on round events.
        secagg_identity: signing key and roster for signed secure aggregation (None: unsigned).
        privacy_floor: the weakest privacy parameters this client accepts; TRAIN tasks below
            it are declined for good before the model is downloaded. The default floor's
            values and why: `fedcore.client.floor.PrivacyFloor`. None trusts the coordinator.
        secure_rng: draw secure-aggregation rounding and noise from a CSPRNG (give a
            `TorchApp` `secure_rng=True` as well, for its DP-SGD).
        compression: compress plain rounds' uploads (`fedcore.compression`): stochastic
            quantisation, or top-k with error feedback (its residual lives in the state
            directory, which top-k therefore needs). None sends updates dense.
    """

    eligible: Callable[[], bool] | None = None
    eligibility_check_s: float = 5.0
    max_train_s: float = 0.0
    train_grace_s: float = 2.0
    max_reconnect_s: float = 300.0
    properties: dict[str, str] = field(default_factory=dict)
    callbacks: Callbacks = field(default_factory=Callbacks)
    secagg_identity: SecAggIdentity | None = None
    privacy_floor: PrivacyFloor | None = field(default_factory=PrivacyFloor)
    secure_rng: bool = False
    compression: Compression | None = None

    def __post_init__(self) -> None:
        for name in ("eligibility_check_s", "max_reconnect_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("max_train_s", "train_grace_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(slots=True)
class RunSummary:
    """What a client did during `run_client`."""

    client_id: str
    tasks_completed: int = 0
    tasks_refused: int = 0
    reconnects: int = 0
    finished: bool = False
    last_error: str = ""
    rounds: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter, reset after a success."""

    initial_s: float = 0.2
    max_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    _attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt."""
        cap = min(self.max_s, self.initial_s * (2**self._attempt))
        self._attempt += 1
        return self.rng.uniform(0.5 * cap, cap)

    def reset(self) -> None:
        """Forget previous failures."""
        self._attempt = 0


def _compressor(compression: Compression | None, state: StateDir | None) -> Compressor | None:
    if compression is None:
        return None
    if compression.kind is Kind.TOPK and state is None:
        raise ValueError("top-k compression keeps its error-feedback residual in the client's "
                         "state directory: pass state_dir")
    return Compressor(compression, store=state)


class ClientLoop:
    """Serves one coordinator through `conn` until the run ends or `stop` is set."""

    def __init__(
        self,
        app: ClientApp,
        conn: Connection,
        *,
        stop: threading.Event,
        options: ClientOptions,
        state: StateDir | None = None,
    ) -> None:
        self._conn = conn
        self._handler = TaskHandler(app, conn.client_id, identity=options.secagg_identity,
                                    floor=options.privacy_floor, secure_rng=options.secure_rng,
                                    compressor=_compressor(options.compression, state),
                                    control_variates=BlobVariates(state))
        self._stop = stop
        self._opts = options
        self._state = state
        self._resume = state.resume() if state is not None else ResumeInfo()
        self._status = ClientStatus(client_id=conn.client_id)
        self._status_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._summary = RunSummary(client_id=conn.client_id)
        self._backoff = Backoff()
        self._unreachable_s = 0.0
        if self._resume.interrupted_task_id:
            log.info("%s: the last run stopped during task %s (the coordinator dropped it)",
                     conn.client_id, self._resume.interrupted_task_id)

    # ----------------------------------------------------------------- public
    def status(self) -> ClientStatus:
        """A snapshot of the phase and counters (safe from any thread)."""
        with self._status_lock:
            return self._status

    def threads(self) -> list[threading.Thread]:
        """Threads this loop started that are still alive (the app's worker, if any)."""
        worker = self._worker
        return [worker] if worker is not None and worker.is_alive() else []

    def run(self) -> RunSummary:
        """Serve until the run ends or `stop` is set; always leaves and waits for the app.

        Raises:
            ClientError: the coordinator refused this client for good, or stayed unreachable,
                or this client's model does not match the run's (`TaskHandler.check_model`).
        """
        ok = False
        try:
            while not self._stop.is_set() and not self._summary.finished:
                if self._eligible():
                    self._serve_once()
                else:
                    self._pause()
            ok = True
        except StopRequested:
            ok = True
        finally:
            self._leave_quietly()
            self._conn.close()
            self._wait_for_worker()
            self._set(phase=ClientPhase.STOPPED if ok else ClientPhase.FAILED)
        return self._summary

    # ----------------------------------------------------------------- steps
    def _serve_once(self) -> None:
        try:
            if not self._conn.joined:
                self._conn.join(self._opts.properties, self._stop)
                log.info("%s joined", self._conn.client_id)
            self._set(phase=ClientPhase.WAITING)
            reply = self._conn.get_task(self._stop)
            self._backoff.reset()
            self._unreachable_s = 0.0
            match reply:
                case Done():
                    self._summary.finished = True
                    log.info("%s: %s", self._conn.client_id, reply.reason or "run finished")
                case Wait():
                    self._stop.wait(reply.retry_after_s)
                case Task():
                    self._serve_task(reply)
        except TransportError as err:
            self._on_transport_error(err)
        except WireError as err:  # e.g. a task kind this client does not know
            self._set(last_error=f"malformed reply: {err}")
            log.error("%s: cannot use the coordinator's reply: %s", self._conn.client_id, err)
            self._stop.wait(self._backoff.next_delay())

    def _serve_task(self, task: Task) -> None:
        received = time.monotonic()
        self._count("tasks_selected", last_round=task.round)
        self._emit(Selected(client_id=self._conn.client_id, round=task.round,
                            task_id=task.task_id, kind=task.kind, time_left_s=task.time_left_s))
        if not self._eligible():
            self._decline(task, "not eligible now")
            return
        self._save_resume(interrupted_task_id=task.task_id)
        try:
            self._handler.check_model(task)
        except ModelMismatch as err:
            self._decline(task, str(err))  # the coordinator drops it at once
            self._save_resume(interrupted_task_id="")
            raise ClientError(str(err)) from err
        try:
            self._run_task(task, received)
        except TaskRefused as err:
            self._refused(task, str(err), RefusedBy.COORDINATOR)
        except WireError as err:  # the model downloaded does not match the task
            self._decline(task, f"unusable model: {err}")
        self._save_resume(interrupted_task_id="")

    def _run_task(self, task: Task, received: float) -> None:
        refusal = self._handler.screen(task)  # below the privacy floor: not even downloaded
        if refusal is not None:
            self._decline(task, refusal.header.declined_reason, refusal)
            return
        params = None
        if task.kind in (TaskKind.TRAIN, TaskKind.EVALUATE):
            self._set(phase=ClientPhase.DOWNLOADING)
            params = self._conn.download(task, self._stop)
        limited = limit_train_time(
            task, local_max_s=self._opts.max_train_s, elapsed_s=time.monotonic() - received
        )
        if limited is None:
            self._decline(task, "no time left before the task's deadline")
            return
        self._set(phase=ClientPhase.TRAINING)
        started = time.monotonic()
        outcome = self._work(limited, params)
        if isinstance(outcome, str):
            self._decline(task, outcome)
            return
        if outcome.header.declined_reason:  # the handler declined on the app's behalf
            self._decline(task, outcome.header.declined_reason, outcome)
            return
        self._count("tasks_trained")
        header = outcome.header
        self._emit(Trained(client_id=self._conn.client_id, round=task.round, task_id=task.task_id,
                           kind=task.kind, num_examples=header.num_examples,
                           metrics=dict(header.metrics), duration_s=time.monotonic() - started))
        self._set(phase=ClientPhase.UPLOADING)
        reply = self._conn.submit(outcome, self._stop)
        self._count("tasks_reported")
        self._summary.tasks_completed += 1
        self._summary.rounds.append(task.round)
        self._save_resume(last_round=task.round, last_task_id=task.task_id,
                          tasks_reported=self._resume.tasks_reported + 1)
        self._emit(Reported(client_id=self._conn.client_id, round=task.round,
                            task_id=task.task_id, kind=task.kind))
        self._wait_as_told(reply)

    def _work(self, task: Task, params: dict[str, Array] | None) -> TaskResult | str:
        """The app's result, or why the task is declined; raises `StopRequested` on stop."""
        box: list[TaskResult | BaseException] = []

        def work() -> None:
            try:
                box.append(self._handler.handle(task, params))
            except BaseException as err:  # noqa: BLE001 - handed to the loop thread
                box.append(err)

        worker = threading.Thread(
            target=work, name=f"fedcore-train-{self._conn.client_id}", daemon=True
        )
        self._worker = worker
        worker.start()
        limit = task.train.max_train_s
        give_up_at = time.monotonic() + limit + self._opts.train_grace_s if limit > 0 else None
        while worker.is_alive():
            worker.join(WORKER_POLL_S)
            if self._stop.is_set():
                raise StopRequested("stopped during training")
            if give_up_at is not None and time.monotonic() > give_up_at and worker.is_alive():
                return f"local work exceeded its time limit of {limit:.1f}s"
        return _outcome(box[0], self._conn.client_id, task)

    def _decline(self, task: Task, reason: str, refusal: TaskResult | None = None) -> None:
        """Tell the coordinator this client will not do `task` (`refusal`: the app's own)."""
        self._set(phase=ClientPhase.UPLOADING)
        reply = None
        try:
            reply = self._conn.submit(refusal or self._handler.decline(task, reason), self._stop)
        except TaskRefused as err:
            log.info("%s: decline of %s not taken: %s", self._conn.client_id, task.task_id,
                     err.reason)
        self._refused(task, reason, RefusedBy.CLIENT)
        self._wait_as_told(reply)

    def _wait_as_told(self, reply: SubmitReply | None) -> None:
        """Wait as long as the coordinator's reply asks before polling again (stop cuts it)."""
        if reply is not None and reply.retry_after_s > 0:
            self._stop.wait(reply.retry_after_s)

    def _refused(self, task: Task, reason: str, by: RefusedBy) -> None:
        log.info("%s: task %s refused by the %s: %s", self._conn.client_id, task.task_id,
                 by.value, reason)
        self._count("tasks_refused")
        self._summary.tasks_refused += 1
        self._emit(Refused(client_id=self._conn.client_id, round=task.round, task_id=task.task_id,
                           kind=task.kind, reason=reason, by=by))

    # ----------------------------------------------------------------- eligibility
    def _eligible(self) -> bool:
        if self._worker is not None and self._worker.is_alive():
            return False  # the app is still busy with a task given up on
        predicate = self._opts.eligible
        if predicate is None:
            return True
        try:
            return bool(predicate())
        except Exception:
            log.exception("%s: the eligibility predicate raised; not eligible",
                          self._conn.client_id)
            return False

    def _pause(self) -> None:
        """Not eligible: leave, so the coordinator selects others, and look again later."""
        if self._conn.joined:
            log.info("%s: not eligible; leaving until it is", self._conn.client_id)
            self._leave_quietly()
        self._set(phase=ClientPhase.IDLE)
        busy = self._worker is not None and self._worker.is_alive()
        self._stop.wait(min(self._opts.eligibility_check_s, 0.5) if busy
                        else self._opts.eligibility_check_s)

    # ----------------------------------------------------------------- errors
    def _on_transport_error(self, err: TransportError) -> None:
        self._summary.last_error = str(err)
        self._set(last_error=self._summary.last_error)
        match err:
            case ClientRejected():  # retrying cannot help
                raise ClientError(f"coordinator refused this client: {err.reason}") from err
            case SessionLost():
                self._conn.session = b""
                log.info("%s: %s; joining again", self._conn.client_id, err.reason)
            case Unreachable():
                self._retry_later(err)
            case _:
                log.warning("%s: %s", self._conn.client_id, err)
                self._stop.wait(self._backoff.next_delay())

    def _retry_later(self, err: Unreachable) -> None:
        """Back off; give up once the coordinator has been unreachable too long."""
        delay = self._backoff.next_delay()
        self._unreachable_s += delay
        if self._unreachable_s > self._opts.max_reconnect_s:
            raise ClientError(
                f"coordinator unreachable for {self._unreachable_s:.0f}s: {err.reason}"
            ) from err
        self._summary.reconnects += 1
        self._count("reconnects")
        if isinstance(err, Disconnected):
            self._conn.session = b""
        log.info("%s: %s; retrying in %.1fs", self._conn.client_id, err.status, delay)
        self._stop.wait(delay)

    def _leave_quietly(self) -> None:
        try:
            self._conn.leave()
        except TransportError as err:
            log.debug("%s: leave failed: %s", self._conn.client_id, err.reason)

    def _wait_for_worker(self) -> None:
        worker = self._worker
        if worker is not None and worker.is_alive():
            log.info("%s: waiting for the app to return from its task", self._conn.client_id)
            worker.join()

    # ----------------------------------------------------------------- bookkeeping
    def _set(self, **changes: Any) -> None:
        with self._status_lock:
            self._status = dataclasses.replace(self._status, **changes)

    def _count(self, counter: str, **changes: Any) -> None:
        with self._status_lock:
            changes[counter] = getattr(self._status, counter) + 1
            self._status = dataclasses.replace(self._status, **changes)

    def _emit(self, event: Selected | Trained | Reported | Refused) -> None:
        self._opts.callbacks.emit(event)

    def _save_resume(self, **changes: Any) -> None:
        self._resume = dataclasses.replace(self._resume, **changes)
        if self._state is not None:
            self._state.save_resume(self._resume)


def _outcome(raw: TaskResult | BaseException, client_id: str, task: Task) -> TaskResult | str:
    """A worker's result, or the reason to decline; re-raises what is not the app's failure."""
    match raw:
        case TaskResult():
            return raw
        case DeclineTask():
            return raw.reason or "declined by the app"
        case ClientAppError() | WireError():
            log.error("%s: task %s: the app returned unusable results: %s",
                      client_id, task.task_id, raw)
            return f"app error: {raw}"
        case Exception():
            log.error("%s: task %s failed in the app", client_id, task.task_id, exc_info=raw)
            return f"app error: {type(raw).__name__}: {raw}"
        case _:
            raise raw
