"""Where the first model comes from, over real gRPC on loopback: the operator, or (opted in) an
authenticated client whose model fits the pinned spec; never a stranger who joins first."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcore.client import ClientError, FitResult, FunctionalApp, run_client
from fedcore.client.connection_errors import TaskRefused
from fedcore.config import load_config
from fedcore.coordinator.process import run_coordinator
from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult
from fedcore.protocol.specs import spec_of
from fedcore.transport.grpc.client_connection import GrpcConnection

pytestmark = pytest.mark.timeout(60)

MODEL = {"w": np.zeros(4, np.float32)}
FIVE = {"w": np.zeros(5, np.float32)}


def app(params: dict[str, np.ndarray]) -> FunctionalApp:
    return FunctionalApp(get_parameters=lambda: {k: v.copy() for k, v in params.items()},
                         fit=lambda p, c: FitResult(params={k: v + 1 for k, v in p.items()},
                                                    num_examples=1))


def test_a_server_without_an_initial_model_fails_at_start_saying_what_to_pass(
    tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from fedcore.cli import main; sys.exit(main())",
         "server", "--address", "127.0.0.1:0",
         "--out", str(tmp_path / "run")],
        check=False, capture_output=True, text=True, timeout=60,
    )

    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--initial-model" in lines[0] and "--initial-model-from client" in lines[0]


def test_a_stranger_joining_first_with_a_5_element_model_cannot_set_the_initial_model(
    start_coordinator
) -> None:
    # arrange: the operator's model; the stranger is the first and only client for a while
    config = EngineConfig(num_rounds=3, train=SelectionConfig(count=1), evaluate=None)
    server = start_coordinator(config, {k: v.copy() for k, v in MODEL.items()})
    address = f"127.0.0.1:{server.port}"
    stranger = GrpcConnection(address, client_id="stranger", rpc_timeout_s=10.0)
    try:
        stranger.join()
        task = stranger.get_task(timeout_s=10.0)

        # act: it is asked to train the operator's model, and sends a 5-element one anyway
        assert isinstance(task, Task) and task.kind is TaskKind.TRAIN
        assert task.model_spec == spec_of(MODEL)
        with pytest.raises(TaskRefused):
            stranger.submit(TaskResult(
                header=ResultHeader(client_id="stranger", task_id=task.task_id, num_examples=1,
                                    spec=spec_of(FIVE)),
                tensors={k: v.copy() for k, v in FIVE.items()}))
        stranger.leave()  # ends its part at once: the round does not wait for its deadline
    finally:
        stranger.close()
    summary = run_client(app(MODEL), address, client_id="real", max_reconnect_s=10.0)

    # assert: the stranger's round failed at its leave; every later one trained the operator's
    # model (the stranger made every round fail)
    assert summary.finished and summary.tasks_completed == 2
    assert [r.status for r in server.engine.records] == ["failed", "ok", "ok"]
    assert "every selected client left" in server.engine.records[0].reason  # not its deadline
    assert spec_of(server.engine.params) == spec_of(MODEL)


def test_a_declined_initial_model_task_is_not_offered_again_in_a_loop(start_coordinator) -> None:
    # arrange: the operator opted in to a client's model (the test fixture, without one)
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None,
                          retry_after_s=1.0)
    server = start_coordinator(config)
    conn = GrpcConnection(f"127.0.0.1:{server.port}", client_id="decliner", rpc_timeout_s=10.0)
    offers, hints = 0, []
    stop = threading.Event()
    threading.Timer(2.5, stop.set).start()

    # act: decline every INITIALIZE task for 2.5 s
    try:
        conn.join()
        while not stop.is_set():
            reply = conn.get_task(timeout_s=10.0)
            if isinstance(reply, Task):
                assert reply.kind is TaskKind.INITIALIZE
                offers += 1
                hints.append(conn.submit(TaskResult(header=ResultHeader(
                    client_id="decliner", task_id=reply.task_id, num_examples=0,
                    declined_reason="no model here"))).retry_after_s)
    finally:
        conn.close()

    # assert: offered at once, then after 1 s, then after 2 s more (a busy loop: hundreds), and
    # each decline's reply says how long the backoff is
    assert 1 <= offers <= 3
    assert 0.5 < hints[0] <= 1.0
    assert all(0.5 * 2**i < h <= 2**i for i, h in enumerate(hints))
    assert server.engine.params is None


def _serve(plan: Any) -> tuple[threading.Thread, threading.Event, list[Any], str]:
    """`run_coordinator(plan)` on a thread; returns it, its stop event, its records, address."""
    stop, started, records = threading.Event(), threading.Event(), []
    port: list[int] = []

    def on_start(server: Any, metrics_port: int) -> None:
        port.append(server.port)
        started.set()

    thread = threading.Thread(target=lambda: records.extend(
        run_coordinator(plan, stop=stop, on_start=on_start)), daemon=True)
    thread.start()
    assert started.wait(30), "the coordinator did not start"
    return thread, stop, records, f"127.0.0.1:{port[0]}"


def test_opted_in_a_client_with_another_model_fails_fast_and_a_fitting_one_supplies_it(
    tmp_path: Path
) -> None:
    # arrange: the operator opts in to a client's model, pins its layout, requires a token
    (tmp_path / "token").write_text("s3cret\n")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(
        {"tensors": [{"name": "w", "dtype": "float32", "shape": [4]}]}))
    plan = load_config(None, {
        "server.address": "127.0.0.1:0", "server.out_dir": str(tmp_path / "run"),
        "server.initial_model_from": "client", "server.model_spec": str(spec_file),
        "server.auth_token_file": str(tmp_path / "token"), "server.run_store": "",
        "server.long_poll_s": 0.5,
        "rounds.num_rounds": 1, "rounds.clients_per_round": 1, "rounds.eval_fraction": 0.0,
    })
    thread, stop, records, address = _serve(plan)
    try:
        # act: a token holder with a 5-element model comes first, then a fitting client
        with pytest.raises(ClientError, match="does not match the run's"):
            run_client(app(FIVE), address, client_id="stranger", auth_token="s3cret",
                       max_reconnect_s=10.0)
        summary = run_client(app(MODEL), address, client_id="site", auth_token="s3cret",
                             max_reconnect_s=10.0)
        thread.join(30)
    finally:
        stop.set()
        thread.join(10)

    # assert: the fitting client initialised and trained the only round
    assert summary.finished and summary.tasks_completed == 2  # INITIALIZE, then TRAIN
    assert [r.status for r in records] == ["ok"]
