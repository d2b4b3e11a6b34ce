"""The client's connection loop: join, poll, download, run the task, report; reconnect on failure.

The loop installs no signal handlers and configures no logging; stopping it is the caller's
choice, through a `threading.Event` or `BackgroundClient.stop()`.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from dataclasses import dataclass, field

import grpc

from fedcore.client.app import ClientApp, ClientAppError
from fedcore.client.handler import TaskHandler
from fedcore.messages import Done, Task, TaskKind, Wait
from fedcore.transport.grpc.client_connection import GrpcConnection, StopRequested
from fedcore.transport.grpc.status import REJOIN, TRANSIENT
from fedcore.wire.errors import WireError

log = logging.getLogger(__name__)


class ClientError(RuntimeError):
    """The client cannot go on (e.g. the coordinator refused its credentials)."""


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


def run_client(
    app: ClientApp,
    address: str,
    *,
    client_id: str | None = None,
    auth_token: str = "",
    credentials: grpc.ChannelCredentials | None = None,
    stop: threading.Event | None = None,
    max_reconnect_s: float = 300.0,
    properties: dict[str, str] | None = None,
) -> RunSummary:
    """Serve the coordinator at `address` with `app` until the run ends or `stop` is set.

    Args:
        app: what training and evaluation mean for this client.
        address: host:port of the coordinator.
        client_id: a stable id (a random one when None).
        auth_token: shared token if the coordinator requires one.
        credentials: TLS channel credentials (see `grpc.ssl_channel_credentials`).
        stop: set it (from any thread) to leave cleanly.
        max_reconnect_s: give up after this long without reaching the coordinator.
        properties: facts about this client shown to the coordinator's operator.

    Raises:
        ClientError: the coordinator refused this client for good, or stayed unreachable.
    """
    stop = stop or threading.Event()
    cid = client_id or f"client-{uuid.uuid4().hex[:12]}"
    conn = GrpcConnection(address, client_id=cid, auth_token=auth_token, credentials=credentials)
    handler = TaskHandler(app, cid)
    summary = RunSummary(client_id=cid)
    backoff = Backoff()
    unreachable_s = 0.0
    try:
        while not stop.is_set():
            try:
                if not conn.joined:
                    conn.join(properties)
                    log.info("%s joined %s", cid, address)
                reply = conn.get_task(stop)
                backoff.reset()
                unreachable_s = 0.0
                match reply:
                    case Done():
                        summary.finished = True
                        log.info("%s: %s", cid, reply.reason or "run finished")
                        break
                    case Wait():
                        stop.wait(reply.retry_after_s)
                    case Task():
                        _run_task(conn, handler, reply, summary)
            except StopRequested:
                break
            except grpc.RpcError as err:
                code = err.code()
                summary.last_error = f"{code.name}: {err.details()}"
                if code in REJOIN:
                    conn.session = b""
                    log.info("%s: %s; joining again", cid, err.details())
                elif code in TRANSIENT:
                    delay = backoff.next_delay()
                    unreachable_s += delay
                    if unreachable_s > max_reconnect_s:
                        raise ClientError(
                            f"coordinator at {address} unreachable for {unreachable_s:.0f}s: "
                            f"{err.details()}"
                        ) from err
                    summary.reconnects += 1
                    conn.session = b"" if code is grpc.StatusCode.UNAVAILABLE else conn.session
                    log.info("%s: %s; retrying in %.1fs", cid, code.name, delay)
                    stop.wait(delay)
                elif code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS):
                    summary.tasks_refused += 1
                    log.info("%s: result not taken: %s", cid, err.details())
                elif code is grpc.StatusCode.PERMISSION_DENIED or (
                    code is grpc.StatusCode.UNAUTHENTICATED and not conn.joined
                ):
                    raise ClientError(f"coordinator refused this client: {err.details()}") from err
                else:
                    summary.tasks_refused += 1
                    log.warning("%s: task failed: %s: %s", cid, code.name, err.details())
    finally:
        _leave_quietly(conn)
        conn.close()
    return summary


def _run_task(conn: GrpcConnection, handler: TaskHandler, task: Task, summary: RunSummary) -> None:
    params = conn.download(task) if task.kind is not TaskKind.INITIALIZE else None
    try:
        result = handler.handle(task, params)
    except (ClientAppError, WireError) as err:
        log.error("%s: task %s failed in the app: %s", handler.client_id, task.task_id, err)
        result = handler.decline(task, f"app error: {err}")
    conn.submit(result)
    summary.tasks_completed += 1
    summary.rounds.append(task.round)


def _leave_quietly(conn: GrpcConnection) -> None:
    try:
        conn.leave()
    except grpc.RpcError as err:
        log.debug("leave failed: %s", err.details())


class BackgroundClient:
    """`run_client` on a background thread, with `start()`, `stop(timeout)` and status."""

    def __init__(self, app: ClientApp, address: str, **kwargs: object) -> None:
        self._app = app
        self._address = address
        self._kwargs = kwargs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Start serving in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("this BackgroundClient was already started")
        self._thread = threading.Thread(target=self._run, name="fedcore-client", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Ask the client to leave and wait up to `timeout`; True when the thread has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        """Whether the client thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.summary = run_client(
                self._app, self._address, stop=self._stop, **self._kwargs  # type: ignore[arg-type]
            )
        except BaseException as err:
            self.error = err
            log.error("background client stopped: %s", err)
