"""A coordinator process killed mid-round resumes from its checkpoint and ends where an
uninterrupted run ends; SIGTERM stops it cleanly. Clients are deterministic NumPy processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedcore.storage.checkpoints import load_checkpoint
from fedcore.storage.run_store import RunStore

from .conftest import free_port, summary_of, wait_until

pytestmark = pytest.mark.timeout(180)

ROUNDS = 4
# (add, examples): the example-weighted mean update is (1 + 2 + 2 * 5) / 4 = 3.25 per round,
# exact in float32 whatever the order the results arrive in.
CLIENTS = {"c1": (1, 1), "c2": (2, 1), "c3": (5, 2)}


def checkpoint_round(out: Path) -> int:
    snap = load_checkpoint(out)  # never half-written: the file is replaced atomically
    return snap.round if snap else 0


@pytest.fixture
def initial_model(tmp_path: Path) -> Path:
    path = tmp_path / "initial.npz"
    np.savez(path, w=np.zeros(4, np.float32))
    return path


def coordinator(procs: list, out: Path, port: int, model: Path, *extra: str,
                rounds: int = ROUNDS, clients: int = 3) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedcore.cli", "server", "--address", f"127.0.0.1:{port}",
         "--out", str(out), "--rounds", str(rounds), "--min-clients", str(clients),
         "--clients-per-round", str(clients), "--min-results", str(clients),
         "--initial-model", str(model), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    procs.append(proc)
    return proc


def clients(spawn_client, port: int, gate: list[str] | None = None) -> list[subprocess.Popen[str]]:
    return [
        spawn_client(f"127.0.0.1:{port}", cid, "--add", str(add), "--examples", str(n),
                     *(gate if gate and cid == "c1" else []))
        for cid, (add, n) in CLIENTS.items()
    ]


def run_uninterrupted(processes, spawn_client, out: Path, model: Path) -> None:
    port = free_port()
    server = coordinator(processes, out, port, model)
    procs = clients(spawn_client, port)
    assert server.wait(120) == 0, server.stderr.read() if server.stderr else ""
    for proc in procs:
        summary_of(proc)


def test_sigkill_mid_round_then_resume_ends_like_an_uninterrupted_run(
    processes, spawn_client, initial_model: Path, tmp_path: Path
) -> None:
    # arrange: c1 blocks in its 3rd fit (round 3) until `go` exists
    out, port = tmp_path / "killed", free_port()
    go, marker = tmp_path / "go", tmp_path / "c1-in-round-3"
    first = coordinator(processes, out, port, initial_model)
    gate = ["--gate-from", "3", "--fit-marker", str(marker), "--wait-for", str(go)]
    procs = clients(spawn_client, port, gate)
    wait_until(lambda: marker.exists() and checkpoint_round(out) == 2)

    # act: kill the coordinator mid-round, restart it with --resume, then let c1 go on
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = coordinator(processes, out, port, initial_model, "--resume")
    go.touch()
    rc = second.wait(120)
    summaries = [summary_of(p) for p in procs]
    run_uninterrupted(processes, spawn_client, tmp_path / "straight", initial_model)

    # assert
    assert rc == 0, second.stderr.read() if second.stderr else ""
    resumed, straight = load_checkpoint(out), load_checkpoint(tmp_path / "straight")
    assert resumed is not None and straight is not None
    assert resumed.round == straight.round == ROUNDS
    assert resumed.params["w"].tobytes() == straight.params["w"].tobytes()
    np.testing.assert_array_equal(resumed.params["w"], np.full(4, 3.25 * ROUNDS, np.float32))
    history = json.loads((out / "history.json").read_text())["rounds"]
    assert [(r["round"], r["status"]) for r in history] == [(k, "ok") for k in range(1, 5)]
    store = RunStore(out / "runs.sqlite")
    assert [r["round"] for r in store.rounds()] == [1, 2, 3, 4]
    assert {c["client_id"]: c["joins"] >= 2 for c in store.clients()} == dict.fromkeys(CLIENTS, True)
    store.close()
    assert all(s["finished"] for s in summaries)


def test_existing_checkpoint_without_resume_is_refused(
    processes, initial_model: Path, tmp_path: Path
) -> None:
    from fedcore.storage.checkpoints import save_checkpoint
    from fedcore.engine.snapshot import EngineSnapshot

    save_checkpoint(tmp_path, EngineSnapshot(round=1, task_seq=1, params={"w": np.zeros(4)}))

    proc = coordinator(processes, tmp_path, free_port(), initial_model)
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 2 and "--resume" in err


def test_sigterm_stops_cleanly_and_keeps_the_last_checkpoint(
    processes, spawn_client, initial_model: Path, tmp_path: Path
) -> None:
    # arrange: one client that blocks in round 2
    out, port, marker = tmp_path / "run", free_port(), tmp_path / "in-round-2"
    server = coordinator(processes, out, port, initial_model, rounds=3, clients=1)
    spawn_client(f"127.0.0.1:{port}", "c1", "--gate-from", "2", "--fit-marker", str(marker),
                 "--wait-for", str(tmp_path / "never"))
    wait_until(lambda: marker.exists() and checkpoint_round(out) == 1)

    # act
    server.send_signal(signal.SIGTERM)
    _stdout, err = server.communicate(timeout=60)

    # assert
    assert server.returncode == 0, err
    assert "stopping" in err
    assert checkpoint_round(out) == 1
