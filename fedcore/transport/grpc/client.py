"""The SDK's gRPC client: `run_client` (blocking) and `BackgroundClient` (on a thread).

They connect a `fedcore.client.loop.ClientLoop` to a coordinator through a `GrpcConnection`;
`fedcore.client` re-exports both. Neither installs signal handlers nor configures logging;
stopping is the host's choice, through a `threading.Event` or `BackgroundClient.stop()`. The
threads a client starts are named `fedcore-client-<id>` (the loop) and `fedcore-train-<id>`
(the app's work, one per task); after `stop()` returns True none is left. gRPC itself (grpcio
1.85) leaves no thread once the channel is closed; were a later version to keep one, it would
be a daemon thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
from types import TracebackType
from typing import Any

import grpc

from fedcore.client.app import ClientApp
from fedcore.client.events import ClientPhase, ClientStatus
from fedcore.client.loop import ClientLoop, ClientOptions, RunSummary
from fedcore.client.state import StateDir
from fedcore.protocol.client_id import check_client_id
from fedcore.transport.grpc.client_connection import GrpcConnection

log = logging.getLogger(__name__)

__all__ = ["BackgroundClient", "client_options", "run_client"]


def run_client(
    app: ClientApp,
    address: str,
    options: ClientOptions | None = None,
    *,
    client_id: str | None = None,
    state_dir: StateDir | str | os.PathLike[str] | None = None,
    auth_token: str = "",
    credentials: grpc.ChannelCredentials | None = None,
    stop: threading.Event | None = None,
    **settings: Any,
) -> RunSummary:
    """Serve the coordinator at `address` with `app` until the run ends or `stop` is set.

    Args:
        app: what training and evaluation mean for this client (any `ClientApp`).
        address: host:port of the coordinator.
        options: how the client behaves (`ClientOptions`: eligibility, time limits, callbacks,
            secure-aggregation identity, privacy floor, secure randomness); None: the defaults.
        client_id: a stable id; None uses the one kept in `state_dir`, else a random one (a
            secure-aggregation identity's client id wins).
        state_dir: the client's state directory (see `fedcore.client.state`); None keeps none.
            Pass an open `StateDir` to share it with the app (e.g. its privacy accountant);
            the caller then closes it.
        auth_token: shared token if the coordinator requires one.
        credentials: TLS channel credentials (see `grpc.ssl_channel_credentials`).
        stop: set it (from any thread) to leave cleanly.
        **settings: `ClientOptions` fields by name, over `options` (e.g. `eligible=on_power`,
            `privacy_floor=PrivacyFloor(max_epsilon=8.0)`, `secure_rng=True`).

    Raises:
        ClientError: the coordinator refused this client for good, or stayed unreachable.
        StateError: `state_dir` is in use by another client, or belongs to another client id.
        TypeError: a setting that `ClientOptions` does not have.
        ValueError: `client_id` breaks the id rules (docs/protocol.md 3.1).
    """
    opts = client_options(options, **settings)
    state, owned = _open_state(state_dir)
    try:
        loop, _ = _connect(app, address, client_id, state, auth_token, credentials,
                           stop or threading.Event(), opts)
        return loop.run()
    finally:
        if owned and state is not None:
            state.close()


def client_options(options: ClientOptions | None = None, **settings: Any) -> ClientOptions:
    """`options` (or the defaults) with `settings` replaced; `callbacks` or `properties` of None
    keep the defaults.

    Raises:
        TypeError: a setting that `ClientOptions` does not have.
        ValueError: a setting out of range.
    """
    given = {k: v for k, v in settings.items()
             if not (k in ("callbacks", "properties") and v is None)}
    if "properties" in given:
        given["properties"] = dict(given["properties"])
    return dataclasses.replace(options or ClientOptions(), **given)


class BackgroundClient:
    """A client on its own thread: `start()`, `status`, `stop(timeout)`; or use it in `with`.

    Takes the arguments of `run_client` except `stop`.
    """

    def __init__(
        self,
        app: ClientApp,
        address: str,
        options: ClientOptions | None = None,
        *,
        client_id: str | None = None,
        state_dir: StateDir | str | os.PathLike[str] | None = None,
        auth_token: str = "",
        credentials: grpc.ChannelCredentials | None = None,
        **settings: Any,
    ) -> None:
        self._app = app
        self._address = address
        self._client_id = client_id
        self._state_dir = state_dir
        self._auth = (auth_token, credentials)
        self._options = client_options(options, **settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: ClientLoop | None = None
        self._conn: GrpcConnection | None = None
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Lock the state directory and start serving on a daemon thread.

        Raises:
            RuntimeError: it was started before.
            StateError: the state directory is in use or belongs to another client id.
        """
        if self._thread is not None:
            raise RuntimeError("this BackgroundClient was already started")
        state, owned = _open_state(self._state_dir)
        try:
            self._loop, self._conn = _connect(
                self._app, self._address, self._client_id, state, *self._auth, self._stop,
                self._options,
            )
        except BaseException:
            if owned and state is not None:
                state.close()
            raise
        self._thread = threading.Thread(
            target=self._run, args=(self._loop, state if owned else None), daemon=True,
            name=f"fedcore-client-{self._loop.status().client_id}",
        )
        self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Leave now and wait up to `timeout` for the client's threads to end.

        A task in progress counts as dropped at the coordinator. The app's `fit` is never
        interrupted: when it has not returned within `timeout`, this returns False and the
        client thread ends (releasing the state directory) once it does.
        Called from the client's own thread (a callback), it only asks and returns False.
        """
        self._stop.set()
        if self._conn is not None:
            self._conn.cancel_current()
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread() or self._is_worker_thread():
            return False
        thread.join(timeout)
        return not thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the client ends (the run is over, or it was stopped); False on timeout."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def status(self) -> ClientStatus:
        """What the client is doing now, with its counters."""
        if self._loop is None:
            return ClientStatus(client_id=self._client_id or "", phase=ClientPhase.IDLE)
        return self._loop.status()

    @property
    def running(self) -> bool:
        """Whether the client thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> BackgroundClient:  # noqa: PYI034
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _is_worker_thread(self) -> bool:
        return self._loop is not None and threading.current_thread() in self._loop.threads()

    def _run(self, loop: ClientLoop, owned_state: StateDir | None) -> None:
        try:
            self.summary = loop.run()
        except BaseException as err:  # noqa: BLE001 - surfaced through `error` and `status`
            self.error = err
            log.error("background client stopped: %s", err)
        finally:
            if owned_state is not None:
                owned_state.close()


def _open_state(
    state_dir: StateDir | str | os.PathLike[str] | None,
) -> tuple[StateDir | None, bool]:
    """The state directory to use, and whether this client opened it (and must close it)."""
    if state_dir is None or isinstance(state_dir, StateDir):
        return state_dir, False
    return StateDir.open(state_dir), True


def _connect(
    app: ClientApp,
    address: str,
    client_id: str | None,
    state: StateDir | None,
    auth_token: str,
    credentials: grpc.ChannelCredentials | None,
    stop: threading.Event,
    options: ClientOptions,
) -> tuple[ClientLoop, GrpcConnection]:
    identity = options.secagg_identity
    if identity is not None:
        if client_id not in (None, identity.client_id):
            raise ValueError(f"client_id {client_id!r} differs from the secure-aggregation "
                             f"identity's {identity.client_id!r}: pass one of them")
        client_id = identity.client_id
    if client_id is not None:  # fail at start, not with a Join the coordinator refuses
        check_client_id(client_id)
    if state is not None:
        cid = state.client_id(client_id)
    else:
        cid = client_id or f"client-{secrets.token_hex(8)}"  # 64 random bits (protocol.md 3.1)
    conn = GrpcConnection(address, client_id=cid, auth_token=auth_token, credentials=credentials)
    try:
        return ClientLoop(app, conn, stop=stop, options=options, state=state), conn
    except BaseException:
        conn.close()
        raise
