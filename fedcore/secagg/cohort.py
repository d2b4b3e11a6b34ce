"""An in-memory driver: one server machine and n client machines passing messages directly.

The same machines the gRPC driver runs; used by the simulator, the tests and the benchmark.
It records every message the server receives (the server's view of the round), the bytes
each client sends and receives, and the compute time of each party. A client that refuses a
message (a `ProtocolError`) leaves the round, as a deployed client that declines does; its
reason is kept in `refusals`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Executor
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.config import RoundSpec
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.keys import KeySource
from fedcore.secagg.messages import ClientMessage, ServerMessage, wire_size
from fedcore.secagg.server import Phase as ServerPhase
from fedcore.secagg.server import SecAggResult, SecAggServer

_T = TypeVar("_T")
DropPlan = Mapping[type[ClientMessage], Collection[int]]


class Cohort:
    """Runs one round among in-memory machines.

    Args:
        spec: the round.
        identity_keys: Ed25519 keys of clients 1..n, for signed rounds.
        random_bytes: key material source shared by the clients (os.urandom by default).
        record: keep every message the server receives in `server_view`.
        executor: runs the server's unmasking (see `SecAggServer`); None runs it inline.
    """

    def __init__(
        self,
        spec: RoundSpec,
        *,
        identity_keys: Mapping[int, Ed25519PrivateKey] | None = None,
        random_bytes: KeySource = os.urandom,
        record: bool = False,
        executor: Executor | None = None,
    ) -> None:
        identity_keys = identity_keys or {}
        self.spec = spec
        self.server = SecAggServer(spec, executor=executor)
        self.clients = {
            c: SecAggClient(spec, c, identity_key=identity_keys.get(c), random_bytes=random_bytes)
            for c in spec.clients
        }
        self.alive = set(spec.clients)
        self.record = record
        self.server_view: list[ClientMessage] = []
        self.refusals: dict[int, str] = {}
        self.bytes_up = dict.fromkeys(spec.clients, 0)
        self.bytes_down = dict.fromkeys(spec.clients, 0)
        self.client_seconds = dict.fromkeys(spec.clients, 0.0)
        self.server_seconds = 0.0
        self.server_cpu_seconds = 0.0  # this process's CPU time: others' load does not count

    def run(
        self, inputs: Mapping[int, npt.NDArray[np.integer]], *, drops: DropPlan | None = None
    ) -> SecAggResult:
        """Run the round to its end; clients in `drops[T]` vanish instead of sending a T.

        Raises:
            RoundAborted: when the server aborts.
        """
        drops = drops or {}
        adverts: list[ClientMessage] = [
            self._timed(c, self.clients[c].advertise_keys) for c in sorted(self.alive)
        ]
        outbound = self._to_server(self._drop(adverts, drops))
        while self.server.phase not in (ServerPhase.DONE, ServerPhase.ABORTED):
            replies = self._to_clients(outbound, inputs)
            outbound = self._to_server(self._drop(replies, drops))
            if not outbound and self.server.phase not in (ServerPhase.DONE, ServerPhase.ABORTED):
                outbound = self._timed_server(self.server.end_phase)
        return self.server.result()

    def _drop(self, messages: list[ClientMessage], drops: DropPlan) -> list[ClientMessage]:
        for msg in messages:
            if msg.sender in drops.get(type(msg), ()):
                self.alive.discard(msg.sender)
        return [msg for msg in messages if msg.sender in self.alive]

    def _to_clients(
        self, outbound: list[ServerMessage], inputs: Mapping[int, npt.NDArray[np.integer]]
    ) -> list[ClientMessage]:
        replies: list[ClientMessage] = []
        for msg in outbound:
            if msg.recipient not in self.alive:
                continue
            self.bytes_down[msg.recipient] += wire_size(msg)
            client = self.clients[msg.recipient]
            try:
                replies += self._timed(msg.recipient, lambda: client.handle(msg))  # noqa: B023
            except ProtocolError as err:
                self.refusals[msg.recipient] = str(err)
                self.alive.discard(msg.recipient)
                continue
            if client.phase is ClientPhase.MASK:
                vector = inputs[client.client_id]
                replies.append(self._timed(msg.recipient, lambda: client.mask_input(vector)))  # noqa: B023
        return replies

    def _to_server(self, messages: list[ClientMessage]) -> list[ServerMessage]:
        outbound: list[ServerMessage] = []
        for msg in messages:
            if self.record:
                self.server_view.append(msg)
            self.bytes_up[msg.sender] += wire_size(msg)
            outbound += self._timed_server(lambda: self.server.handle(msg))  # noqa: B023
        return outbound

    def _timed(self, client: int, action: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        result = action()
        self.client_seconds[client] += time.perf_counter() - start
        return result

    def _timed_server(self, action: Callable[[], list[ServerMessage]]) -> list[ServerMessage]:
        start, cpu = time.perf_counter(), time.process_time()
        result = action()
        self.server_seconds += time.perf_counter() - start
        self.server_cpu_seconds += time.process_time() - cpu
        return result
