"""The floor for `round_overhead`: the same bytes through bare gRPC streams, no fedcore logic.

A grpc.aio server on its own event-loop thread (as `CoordinatorServer` runs) offers three
proto-free methods with identity (de)serialisers, registered through a generic handler:

- `Gate(round)` (unary): held until that round opens, then answers `go` (or `done`). It plays
  the part of fedcore's long-poll `GetTask`; round 1 opens once every client waits at the gate,
  as a fedcore round opens once `min_available` clients have joined.
- `Download` (server-streaming): the model's bytes as 1 MiB chunks (prebuilt `bytes`).
- `Upload` (client-streaming): the same number of bytes back; the server only counts them.

A round closes when every client's upload has arrived; the next opens at once. The clients run
in worker processes, many threads each, one channel per client thread with the channel options
`GrpcConnection` uses, exactly as the fedcore clients of the benchmark are laid out.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from fedcore.transport.grpc.client_connection import MAX_MESSAGE_BYTES

SERVICE = "fedcore.bench.Floor"
CHUNK_BYTES = 1 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
RPC_TIMEOUT_S = 600.0


def chunks_of(nbytes: int, chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """`nbytes` of payload cut as fedcore cuts a model: full chunks, then the remainder."""
    blob = bytes(range(256)) * (nbytes // 256 + 1)
    return [blob[i : min(i + chunk_bytes, nbytes)] for i in range(0, nbytes, chunk_bytes)]


def cpu_s() -> float:
    """CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_s() -> float:
    """CPU seconds used by this process's finished (waited-for) children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(slots=True)
class RoundMark:
    """One closed round as the server saw it."""

    round: int
    duration_s: float
    closed_at: float
    cpu_s: float
    bytes_sent: int
    bytes_received: int


@dataclass(slots=True)
class _State:
    clients: int
    rounds: int
    chunks: list[bytes]
    round: int = 0  # the open round; 0 before the first
    waiting: int = 0
    finished_clients: int = 0  # clients told "done"
    uploads: int = 0
    opened_at: float = 0.0
    sent: int = 0
    received: int = 0
    marks: list[RoundMark] = field(default_factory=list)
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def gate(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        wanted = int(request)
        async with self.cond:
            self.waiting += 1
            if self.round == 0 and self.waiting >= self.clients:
                self._open(1)
            await self.cond.wait_for(lambda: self.round >= wanted)
            if wanted > self.rounds:
                self.finished_clients += 1
                self.cond.notify_all()
        return b"done" if wanted > self.rounds else b"go"

    async def download(
        self, request: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += len(chunk)
            yield chunk

    async def upload(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> bytes:
        async for chunk in requests:
            self.received += len(chunk)
        async with self.cond:
            self.uploads += 1
            if self.uploads == self.clients:
                now = time.monotonic()
                self.marks.append(
                    RoundMark(
                        self.round, now - self.opened_at, now, cpu_s(), self.sent, self.received
                    )
                )
                self.uploads = 0
                self._open(self.round + 1)
        return b"ok"

    def _open(self, number: int) -> None:
        self.round = number
        self.opened_at = time.monotonic()
        self.cond.notify_all()


class FloorServer:
    """The bare server on a background event-loop thread; `start()` returns the port."""

    def __init__(self, *, clients: int, rounds: int, nbytes: int) -> None:
        self._clients, self._rounds, self._nbytes = clients, rounds, nbytes
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._finished = threading.Event()
        self._state: _State | None = None
        self.port = 0

    @property
    def marks(self) -> list[RoundMark]:
        """The closed rounds so far."""
        return list(self._state.marks) if self._state else []

    def start(self) -> int:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        self._started.wait(30)
        return self.port

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    async def _serve(self) -> None:
        try:
            state = _State(self._clients, self._rounds, chunks_of(self._nbytes))
            self._state = state
            server = grpc.aio.server(options=CHANNEL_OPTIONS)
            server.add_generic_rpc_handlers(
                (
                    grpc.method_handlers_generic_handler(
                        SERVICE,
                        {
                            "Gate": grpc.unary_unary_rpc_method_handler(state.gate),
                            "Download": grpc.unary_stream_rpc_method_handler(state.download),
                            "Upload": grpc.stream_unary_rpc_method_handler(state.upload),
                        },
                    ),
                )
            )
            self.port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self._started.set()
            async with state.cond:  # stop once every client has heard "done"
                await state.cond.wait_for(lambda: state.finished_clients >= self._clients)
            await server.stop(grace=1.0)
        finally:
            self._started.set()
            self._finished.set()


def _client(address: str, nbytes: int, upload: list[bytes]) -> None:
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    gate = channel.unary_unary(f"/{SERVICE}/Gate")
    download = channel.unary_stream(f"/{SERVICE}/Download")
    send = channel.stream_unary(f"/{SERVICE}/Upload")
    try:
        number = 1
        while gate(str(number).encode(), timeout=RPC_TIMEOUT_S) == b"go":
            got = sum(len(chunk) for chunk in download(b"", timeout=RPC_TIMEOUT_S))
            if got != nbytes:
                raise RuntimeError(f"floor client received {got} bytes, expected {nbytes}")
            send(iter(upload), timeout=RPC_TIMEOUT_S)
            number += 1
    finally:
        channel.close()


def run_threads(work: list[Callable[[], None]], what: str) -> None:
    """Run each callable on a thread of its own until all end; exit with an error if any failed."""
    failures: list[str] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as err:  # noqa: BLE001 - any failure ends the worker with an error
            failures.append(repr(err))

    pool = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in work]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} {what} failed; first: {failures[0]}")


def run_worker(address: str, threads: int, nbytes: int) -> None:
    """A worker process: `threads` bare clients until the server says done."""
    upload = chunks_of(nbytes)
    run_threads([lambda: _client(address, nbytes, upload)] * threads, "floor clients")
