"""Runs the Coordinator service on its own event-loop thread, with a ticker for deadlines."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2

from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.engine import Phase, RoundEngine
from fedcore.engine.records import RoundRecord
from fedcore.transport.grpc.coordinator_service import (
    SERVICE_NAME,
    CoordinatorService,
    add_health_to_server,
    add_to_server,
)
from fedcore.transport.grpc.heap import HeapTrimmer
from fedcore.transport.grpc.observer import ObserverInterceptor, ServerObserver

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 << 20


class CoordinatorServer:
    """A gRPC coordinator around `engine`, started with `start()` and stopped with `stop()`.

    Args:
        engine: the round engine it drives (or a FedBuff `BufferedCoordinator`).
        address: host:port to listen on; port 0 picks a free one (see `port`).
        on_round: called (on the server thread) with each completed round's record.
        credentials: TLS server credentials; None serves plaintext (loopback, tests).
        auth_token: when set, clients must present it to join.
        long_poll_s: how long a GetTask may wait for work before answering "wait".
        linger_s: how long to keep serving after the run ends, so clients hear "done".
        tick_s: how often deadlines are checked.
        trim_s: how often memory freed in the C heap is returned to the system (`heap`).
        observer: told of RPCs, joins, ticks and rounds (metrics, run store); see `observer`.
        bind_client_ids: admit a client only under an id its certificate names (with mutual
            TLS credentials; `fedcore.transport.grpc.tls.bound_id_refusal`).
    """

    def __init__(
        self,
        engine: RoundEngine | BufferedCoordinator,
        *,
        address: str = "127.0.0.1:0",
        on_round: Callable[[RoundRecord], None] | None = None,
        credentials: grpc.ServerCredentials | None = None,
        auth_token: str = "",
        long_poll_s: float = 5.0,
        linger_s: float = 3.0,
        tick_s: float = 0.2,
        trim_s: float = 1.0,
        observer: ServerObserver | None = None,
        bind_client_ids: bool = False,
    ) -> None:
        self.engine = engine
        self._bind_client_ids = bind_client_ids
        self.address = address
        self._on_round = on_round
        self._credentials = credentials
        self._auth_token = auth_token
        self._long_poll_s = long_poll_s
        self._linger_s = linger_s
        self._tick_s = tick_s
        self._observer = observer
        self._heap = HeapTrimmer(trim_s)
        self._port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._finished = threading.Event()
        self._stop_requested: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.service: CoordinatorService | None = None  # set once serving (on the server thread)

    @property
    def port(self) -> int:
        """The bound port (after `start`)."""
        return self._port

    @property
    def finished(self) -> bool:
        """Whether the run is over and the server has stopped."""
        return self._finished.is_set()

    def start(self, timeout: float = 30.0) -> int:
        """Start serving in a background thread; returns the bound port."""
        self._thread = threading.Thread(target=self._run, name="fedcore-coordinator", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("coordinator did not start in time")
        if self._error is not None:
            raise RuntimeError(f"coordinator failed to start: {self._error}") from self._error
        return self._port

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run finished and the server stopped; False on timeout."""
        return self._finished.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving now (open rounds are abandoned)."""
        loop, ev = self._loop, self._stop_requested
        if loop is not None and ev is not None and not self._finished.is_set():
            loop.call_soon_threadsafe(ev.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # surfaced through start() or logged
            self._error = err
            log.exception("coordinator stopped with an error")
        finally:
            self._started.set()
            self._finished.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        server = grpc.aio.server(
            interceptors=[ObserverInterceptor(self._observer)] if self._observer else None,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),  # a second coordinator on the port must fail
            ]
        )
        service = CoordinatorService(
            self.engine, long_poll_s=self._long_poll_s, auth_token=self._auth_token,
            on_change=self._emit_records, bind_client_ids=self._bind_client_ids,
            max_message_bytes=MAX_MESSAGE_BYTES,
        )
        add_to_server(service, server)
        self.service = service
        health_servicer = health.aio.HealthServicer()
        add_health_to_server(service, health_servicer, server)
        if self._credentials is not None:
            self._port = server.add_secure_port(self.address, self._credentials)
        else:
            self._port = server.add_insecure_port(self.address)
        await server.start()
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("coordinator listening on port %d", self._port)
        self._started.set()
        done_at: float | None = None
        while not self._stop_requested.is_set():
            service.tick()
            self._emit_records()
            self._report_tick(service)
            self._heap.maybe_trim(time.monotonic())
            if self.engine.phase is Phase.DONE and done_at is None:
                done_at = time.monotonic()
                log.info("run finished; serving %.1fs more so clients hear it", self._linger_s)
            if done_at is not None and time.monotonic() - done_at >= self._linger_s:
                break
            try:
                await asyncio.wait_for(self._stop_requested.wait(), timeout=self._tick_s)
            except asyncio.TimeoutError:
                pass
        for name in ("", SERVICE_NAME):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.stop(grace=1.0)

    def _emit_records(self) -> None:
        for record in self.engine.pop_new_records():
            log.info(
                "round %d %s: %d/%d results, train_loss=%s loss=%s accuracy=%s (%.2fs)",
                record.round, record.status, record.results_received, record.clients_selected,
                _fmt(record.train_loss), _fmt(record.loss), _fmt(record.accuracy),
                record.duration_s,
            )
            if self._on_round is not None:
                self._on_round(record)
            if self._observer is not None:
                self._observer.round_completed(record)

    def _report_tick(self, service: CoordinatorService) -> None:
        if self._observer is not None:
            self._observer.engine_ticked(
                connected=len(self.engine.available_clients(service.clock())),
                outstanding=len(self.engine.open_clients()),
                round_number=self.engine.round_number,
            )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
