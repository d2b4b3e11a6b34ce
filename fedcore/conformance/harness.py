"""What the conformance kit's scenarios stand on: coordinators, the client under test, helpers.

A `Harness` starts real coordinators (`CoordinatorServer` around a `RecordingEngine`) on
loopback, launches the client under test from a `ClientCommand`, and runs the kit's own
in-process clients (`fedcore.client.BackgroundClient`), some of which drop out on cue. It
stops everything it started in `close()`.
"""

from __future__ import annotations

import shlex
import string
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from fedcore.client import BackgroundClient, Callbacks, Selected
from fedcore.conformance.observe import RecordingEngine
from fedcore.conformance.reference_client import AddValue
from fedcore.engine.config import EngineConfig
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.errors import FedcoreError
from fedcore.protocol.messages import TaskKind
from fedcore.protocol.params import Array, Params
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

PLACEHOLDERS = ("address", "client_id", "token", "add", "examples")


class CommandError(FedcoreError, ValueError):
    """A client command template the kit cannot use."""


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """The command that starts the client under test, with placeholders `{address}`,
    `{client_id}`, `{token}`, `{add}` and `{examples}` (split like a shell line first, so a
    value never splits an argument)."""

    template: str

    def __post_init__(self) -> None:
        words = shlex.split(self.template)
        if not words:
            raise CommandError("the client command is empty")
        used = set()
        for word in words:
            for _, name, _, _ in string.Formatter().parse(word):
                if name is None:
                    continue
                if name not in PLACEHOLDERS:
                    raise CommandError(
                        f"unknown placeholder {{{name}}} in the client command; the kit fills "
                        f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
                used.add(name)
        if "address" not in used:
            raise CommandError("the client command must contain {address}: where the client "
                               "under test finds the coordinator")

    def argv(self, **values: str) -> list[str]:
        """The command's words with the placeholders filled."""
        return [word.format(**values) for word in shlex.split(self.template)]


class ClientProcess:
    """A launched client under test; its stdout and stderr go to `log_path`."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def running(self) -> bool:
        """Whether the process has not exited."""
        return self.proc.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Its exit status, or None when it still runs after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Terminate it (then kill it) if it still runs."""
        if self.proc.poll() is None:
            self.proc.terminate()
            if self.wait(5.0) is None:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Harness:
    """Starts what a scenario needs and stops all of it in `close()`.

    Args:
        command: how to start the client under test.
        token: the shared token every coordinator requires (`{token}`).
        log_dir: where each launched client's output goes (`<client_id>.log`).
    """

    def __init__(self, command: ClientCommand, token: str, log_dir: Path) -> None:
        self.command, self.token, self.log_dir = command, token, log_dir
        self._servers: list[CoordinatorServer] = []
        self._clients: list[ClientProcess] = []
        self._helpers: list[BackgroundClient] = []

    def engine(self, config: EngineConfig, initial: Params | None = None) -> RecordingEngine:
        """A recording FedAvg engine from `initial` (None: a client's INITIALIZE offer)."""
        return RecordingEngine(config, FedAvg(), initial_params=initial,
                               initial_from_client=initial is None)

    def restored(self, config: EngineConfig, snapshot: EngineSnapshot) -> RecordingEngine:
        """A recording engine that goes on from `snapshot` (a coordinator restarted with
        `--resume`)."""
        engine = RecordingEngine.restore(config, FedAvg(), snapshot)
        assert isinstance(engine, RecordingEngine)
        return engine

    def serve(self, engine: RecordingEngine, *, port: int = 0,
              long_poll_s: float = 1.0) -> CoordinatorServer:
        """A coordinator around `engine` on loopback (`port` 0: a free one), started."""
        server = CoordinatorServer(engine, address=f"127.0.0.1:{port}", auth_token=self.token,
                                   long_poll_s=long_poll_s, linger_s=1.5, tick_s=0.05)
        self._servers.append(server)
        server.start()
        return server

    def launch(self, server: CoordinatorServer, client_id: str, *, add: float,
               examples: int) -> ClientProcess:
        """Start the client under test against `server`."""
        argv = self.command.argv(address=f"127.0.0.1:{server.port}", client_id=client_id,
                                 token=self.token, add=repr(add), examples=str(examples))
        try:
            client = ClientProcess(argv, self.log_dir / f"{client_id}.log")
        except OSError as err:
            raise CommandError(f"cannot start the client command {argv[0]!r}: {err}") from err
        self._clients.append(client)
        return client

    def helper(self, server: CoordinatorServer, client_id: str, *, add: float, examples: int,
               initial: Params | None = None,
               drop_at: tuple[TaskKind, int] | None = None) -> BackgroundClient:
        """One of the kit's own clients (fedcore's SDK), started. It adds `add` like the client
        under test; with `initial` it offers those initial parameters. `drop_at` (kind, n):
        when the n-th task of that kind in round 1 arrives, it drops out: it answers nothing
        (the SDK declines a task that arrives while the client is not eligible) and leaves;
        the coordinator counts it as dropped in that phase at once."""
        dropped = threading.Event()
        holder: list[BackgroundClient] = []
        seen = {kind: 0 for kind in TaskKind}

        def on_selected(event: Selected) -> None:
            if drop_at is None or event.round != 1:
                return
            seen[event.kind] += 1
            if (event.kind, seen[event.kind]) == drop_at:
                dropped.set()  # not eligible: the SDK declines this task unanswered ...
                holder[0].stop()  # ... and leaves

        client = BackgroundClient(
            _HelperApp(add, examples, initial), f"127.0.0.1:{server.port}", client_id=client_id,
            auth_token=self.token, max_reconnect_s=30.0,
            callbacks=Callbacks(on_selected=on_selected), eligible=lambda: not dropped.is_set())
        holder.append(client)
        self._helpers.append(client)
        client.start()
        return client

    def close(self) -> None:
        """Stop every helper, client process and coordinator started."""
        for helper in self._helpers:
            helper.stop(timeout=5.0)
        for client in self._clients:
            client.stop()
        for server in self._servers:
            server.stop()


class _HelperApp(AddValue):
    def __init__(self, add: float, examples: int, initial: Params | None) -> None:
        super().__init__(add, examples)
        self._initial = dict(initial or {})

    def get_parameters(self) -> dict[str, Array]:
        if not self._initial:
            return super().get_parameters()  # type: ignore[return-value]
        return {k: np.array(v, copy=True) for k, v in self._initial.items()}


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(step)
    return True


def copy_params(params: Mapping[str, Array]) -> dict[str, Array]:
    """A deep copy of `params`."""
    return {k: np.array(v, copy=True) for k, v in params.items()}
