"""An embedded client: the host keeps serving, stop() is prompt and leaves no fedcore threads,
and the SDK touches neither signal handlers nor logging configuration."""

from __future__ import annotations

import logging
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from fedcore.client import (
    BackgroundClient,
    ClientPhase,
    EvalResult,
    FitResult,
    FunctionalApp,
    TrainConfig,
)
from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.protocol.params import Params

pytestmark = pytest.mark.timeout(60)


def process_globals() -> dict[str, object]:
    """What a well-behaved library leaves alone: signal handlers and logging configuration."""
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handlers[sig] = signal.getsignal(sig)
        except (OSError, ValueError):
            pass
    fedcore_logger = logging.getLogger("fedcore")
    return {
        "signals": handlers,
        "root": (list(logging.root.handlers), logging.root.level),
        "fedcore": (list(fedcore_logger.handlers), fedcore_logger.level, fedcore_logger.propagate),
        "disable": logging.root.manager.disable,
    }


def fedcore_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("fedcore-")
            and t.name != "fedcore-coordinator"]


@contextmanager
def host_http_server(on_request) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            on_request()
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, name="host-http")
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_host_keeps_serving_while_the_background_client_completes_rounds(start_coordinator):
    # arrange: fit blocks until the host has answered a request *during* that training
    config = EngineConfig(num_rounds=3, train=SelectionConfig(count=1), evaluate=None)
    server = start_coordinator(config, {"w": np.zeros(4, np.float32)})
    served_while_training = threading.Event()
    client: BackgroundClient

    def on_request() -> None:
        if client.status.phase is ClientPhase.TRAINING:
            served_while_training.set()

    def fit(params: Params, config: TrainConfig) -> FitResult:
        assert served_while_training.wait(20), "the host stopped answering while training"
        served_while_training.clear()
        return FitResult(params={"w": params["w"] + 1}, num_examples=1)

    app = FunctionalApp(get_parameters=lambda: {"w": np.zeros(4, np.float32)}, fit=fit)
    client = BackgroundClient(app, f"127.0.0.1:{server.port}", client_id="embedded")
    before_threads = set(threading.enumerate())
    before_globals = process_globals()

    # act: the host program answers requests in a loop until the run is over
    with host_http_server(on_request) as url:
        client.start()
        answered = 0
        while client.running:
            with urllib.request.urlopen(url, timeout=10) as reply:
                answered += reply.status == 200
        stopped = client.stop(timeout=10)

    # assert
    assert stopped and client.error is None
    assert client.summary is not None and client.summary.rounds == [1, 2, 3]
    assert client.status.phase is ClientPhase.STOPPED and client.status.tasks_reported == 3
    assert answered >= 3
    np.testing.assert_array_equal(server.engine.params["w"], np.full(4, 3.0))
    assert fedcore_threads() == []
    # grpcio 1.85 leaves no thread after the channel closes; any a later grpc leaves must be
    # a daemon thread that cannot hold the host's exit.
    lingering = set(threading.enumerate()) - before_threads
    assert all(t.daemon and not t.name.startswith("fedcore") for t in lingering), lingering
    assert process_globals() == before_globals


def test_stop_while_waiting_for_work_returns_and_leaves_no_fedcore_threads(start_coordinator):
    # arrange: the round needs two clients, so the only one waits in a long-poll
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=2, min_available=2,
                                                              min_results=2))
    server = start_coordinator(config, {"w": np.zeros(2, np.float32)})
    app = FunctionalApp(get_parameters=lambda: {"w": np.zeros(2, np.float32)},
                        fit=lambda p, c: FitResult(params=dict(p), num_examples=1),
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    client = BackgroundClient(app, f"127.0.0.1:{server.port}")
    client.start()
    while client.status.phase is not ClientPhase.WAITING:
        threading.Event().wait(0.01)

    # act
    stopped = client.stop(timeout=10)

    # assert: it left, so the coordinator no longer counts it as available
    assert stopped and client.status.phase is ClientPhase.STOPPED
    assert fedcore_threads() == []
    assert server.engine.available_clients(now=time.monotonic()) == []
