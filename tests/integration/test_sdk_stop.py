"""Stopping at random moments (waiting, downloading, training, uploading) never corrupts the
state directory, the coordinator drops the client's open task at once, and it rejoins later."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fedcore.client import (
    BackgroundClient,
    ClientPhase,
    EvalResult,
    FitResult,
    FunctionalApp,
    StateDir,
)
from fedcore.engine import EngineConfig, SelectionConfig

pytestmark = pytest.mark.timeout(90)

CSV_CLIENT = Path(__file__).parents[2] / "clients" / "csv_client.py"
SIZE = 1 << 21  # 8 MiB of float32: several chunks each way, so transfers take a moment
STOP_AT = [ClientPhase.WAITING, ClientPhase.DOWNLOADING, ClientPhase.TRAINING,
           ClientPhase.UPLOADING]


def check_state_dir(path: Path, *, killed: bool = False) -> dict[str, object]:
    """The directory is owner-only, holds only whole files, and parses; returns resume.json.

    A process killed mid-write may leave one temp file (never a torn named file); the next
    `StateDir.open` removes it. A clean stop leaves none.
    """
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    names = {p.name for p in path.iterdir()}
    temps = {n for n in names if n.startswith(".tmp-")}
    assert not temps or killed, names
    assert names - temps <= {"lock", "client_id", "resume.json"}, names
    assert all(stat.S_IMODE((path / n).stat().st_mode) == 0o600 for n in names)
    with StateDir.open(path) as state:  # the lock was released
        assert state.resume().tasks_reported >= 0
    assert not any(p.name.startswith(".tmp-") for p in path.iterdir())  # leftovers removed
    return json.loads((path / "resume.json").read_text()) if "resume.json" in names else {}


def slow_app() -> FunctionalApp:
    def fit(params, config):
        time.sleep(0.05)
        return FitResult(params={"w": params["w"] + 1}, num_examples=1)

    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(SIZE, np.float32)}, fit=fit,
                         evaluate=lambda p, c: EvalResult(loss=1.0, num_examples=1))


def stop_when(client: BackgroundClient, phase: ClientPhase, delay_s: float) -> None:
    end = time.monotonic() + 20
    while client.status.phase is not phase and time.monotonic() < end:
        time.sleep(0.0005)
    time.sleep(delay_s)


def test_random_stops_never_corrupt_state_and_the_client_rejoins(start_coordinator, tmp_path):
    # arrange
    config = EngineConfig(num_rounds=1000, train=SelectionConfig(count=1), round_timeout_s=120)
    server = start_coordinator(config, {"w": np.zeros(SIZE, np.float32)})
    address, state_dir = f"127.0.0.1:{server.port}", tmp_path / "state"
    rng = random.Random(7)
    reported = []

    for _ in range(10):
        # act: run, then stop at a random phase plus a random delay
        client = BackgroundClient(slow_app(), address, state_dir=state_dir)
        client.start()
        stop_when(client, rng.choice(STOP_AT), rng.uniform(0.0, 0.02))
        stopped = client.stop(timeout=20)

        # assert: stopped cleanly; files whole; the coordinator is not waiting on it
        assert stopped and client.error is None
        resume = check_state_dir(state_dir)
        reported.append(resume.get("tasks_reported", 0))
        assert server.engine.open_task_id is None
        assert client.status.client_id not in server.engine.available_clients(time.monotonic())

    # act: the same state directory serves again and completes more work
    client = BackgroundClient(slow_app(), address, state_dir=state_dir)
    client.start()
    while client.status.tasks_reported < 2:
        assert client.running, client.error
        time.sleep(0.01)
    assert client.stop(timeout=20)

    # assert
    assert reported == sorted(reported)
    assert check_state_dir(state_dir)["tasks_reported"] >= reported[-1] + 2
    assert (state_dir / "client_id").read_text() == client.status.client_id


def test_killed_client_process_leaves_a_usable_state_dir(start_coordinator, tmp_path):
    # arrange: a real client process with a state directory, killed at random moments
    config = EngineConfig(num_rounds=1000, train=SelectionConfig(count=1))
    server = start_coordinator(config)
    address, state_dir, data = f"127.0.0.1:{server.port}", tmp_path / "state", tmp_path / "d.csv"
    subprocess.run([sys.executable, str(CSV_CLIENT), "--write-example", str(data)], check=True)
    rng = random.Random(11)
    command = [sys.executable, str(CSV_CLIENT), address, str(data), "--state-dir", str(state_dir)]

    for _ in range(3):
        # act
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while not (state_dir / "resume.json").exists():
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        threading.Event().wait(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        # assert
        check_state_dir(state_dir, killed=True)

    first_id = (state_dir / "client_id").read_text()
    before = check_state_dir(state_dir)["tasks_reported"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while json.loads((state_dir / "resume.json").read_text())["tasks_reported"] <= before:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (state_dir / "client_id").read_text() == first_id
