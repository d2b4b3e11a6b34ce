"""Rounds over real gRPC on loopback with client processes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pytest

from fedcore.engine import EngineConfig, Phase, SelectionConfig

from .conftest import summary_of

pytestmark = pytest.mark.timeout(120)


def _wait_until(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_three_client_processes_complete_rounds_with_exact_fedavg(start_coordinator, spawn_client):
    # arrange: clients add 1, 2, 3 with 10, 20, 30 examples -> mean update 14/6 per round
    config = EngineConfig(
        num_rounds=3, train=SelectionConfig(count=3, min_results=3, min_available=3)
    )
    server = start_coordinator(config, {"w": np.zeros(4, np.float32)})
    address = f"127.0.0.1:{server.port}"

    # act
    procs = [
        spawn_client(address, f"c{k}", "--add", str(k), "--examples", str(10 * k)) for k in (1, 2, 3)
    ]

    # assert
    assert server.wait(60)
    records = server.engine.records
    assert [r.status for r in records] == ["ok"] * 3
    assert all(r.results_received == 3 and r.eval_clients == 3 for r in records)
    np.testing.assert_allclose(server.engine.params["w"], np.full(4, 3 * 14 / 6), rtol=1e-6)
    summaries = [summary_of(p) for p in procs]
    assert all(s["finished"] for s in summaries)


def test_killed_client_does_not_block_the_round_and_can_rejoin(
    start_coordinator, spawn_client, tmp_path: Path
):
    # arrange: 4 clients, the round closes once 3 results arrive
    config = EngineConfig(
        num_rounds=3,
        train=SelectionConfig(count=3, over_selection=0.34, min_results=3, min_available=4),
        round_timeout_s=60.0,
        eval_timeout_s=3.0,  # the dead client is still selected for evaluation until then
    )
    server = start_coordinator(config, {"w": np.zeros(4, np.float32)})
    address = f"127.0.0.1:{server.port}"
    go, marker = tmp_path / "go", tmp_path / "victim-in-fit"
    others = [spawn_client(address, f"c{k}", "--wait-for", str(go)) for k in range(3)]
    victim = spawn_client(address, "victim", "--hang-in-fit", "--fit-marker", str(marker))

    # act: kill the victim while it trains, then let the others finish their round
    _wait_until(marker.exists)
    victim.kill()
    victim.wait()
    go.touch()
    _wait_until(lambda: len(server.engine.records) >= 1)
    rejoined = spawn_client(address, "victim")

    # assert
    assert server.wait(60)
    first = server.engine.records[0]
    assert (first.status, first.results_received, first.clients_selected) == ("ok", 3, 4)
    assert all(r.status == "ok" for r in server.engine.records)
    assert summary_of(rejoined)["tasks"] >= 1
    assert max(r.eval_clients for r in server.engine.records[1:]) == 4
    for proc in others:
        summary_of(proc)


def test_result_after_the_deadline_is_refused_and_changes_nothing(start_coordinator, spawn_client):
    import grpc

    from fedcore.client.handler import TaskHandler
    from fedcore.protocol.messages import Task
    from fedcore.transport.grpc.client_connection import GrpcConnection

    from .numpy_client import AddConstant

    # arrange: a round that needs 1 result of 2 and closes after 1.5 s
    config = EngineConfig(
        num_rounds=1,
        train=SelectionConfig(count=2, min_results=1, min_available=2),
        evaluate=None,
        round_timeout_s=1.5,
    )
    server = start_coordinator(config, {"w": np.zeros(4, np.float32)})
    address = f"127.0.0.1:{server.port}"
    late = GrpcConnection(address, client_id="late")
    late.join()
    spawn_client(address, "punctual", "--add", "2")
    task = late.get_task()
    while not isinstance(task, Task):
        task = late.get_task()
    params = late.download(task)
    args = argparse.Namespace(add=100.0, examples=10, fit_marker=None, hang_in_fit=False,
                              wait_for=None, gate_from=1)
    result = TaskHandler(AddConstant(args), "late").handle(task, params)

    # act: submit only after the round has closed at its deadline
    _wait_until(lambda: server.engine.phase is Phase.DONE)
    with pytest.raises(grpc.RpcError) as err:
        late.submit(result)

    # assert
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "closed" in err.value.details()
    np.testing.assert_array_equal(server.engine.params["w"], np.full(4, 2.0, np.float32))
    late.close()
