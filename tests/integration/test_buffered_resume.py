"""A FedBuff coordinator (`fedcore server` with [buffered]) killed with SIGKILL mid-run resumes
from its last server step with --resume and finishes the run. Clients are NumPy processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedcore.storage.checkpoints import load_buffered_checkpoint

from .conftest import free_port, summary_of, wait_until

pytestmark = pytest.mark.timeout(240)

CLIENTS = {"c1": 1.0, "c2": 2.0, "c3": 5.0}  # what each adds to the model
UPDATES, FIRST_LEG = 6, 3
BUFFERED = f"""
[buffered]
buffer_size = 2
concurrency = 3
num_updates = {UPDATES}
task_timeout_s = 120
eval_every = 0      # a step's record (and checkpoint) would wait for its evaluation, which
                    # the clients blocked in their third fit could not give
"""


def version_in(out: Path) -> int:
    snapshot = load_buffered_checkpoint(out)  # the file is replaced atomically
    return snapshot.version if snapshot else 0


def coordinator(procs: list, config: Path, out: Path, port: int, model: Path,
                *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedcore.cli", "server", "--config", str(config),
         "--address", f"127.0.0.1:{port}", "--out", str(out), "--initial-model", str(model),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    procs.append(proc)
    return proc


def test_sigkill_mid_run_then_resume_goes_on_from_the_last_server_step(
    processes, spawn_client, tmp_path: Path
) -> None:
    # arrange: every client blocks in its 3rd fit until `go` exists, so after 6 results (3
    # server steps) all three tasks are out and the coordinator is killed mid-run
    config, model, out = tmp_path / "run.toml", tmp_path / "initial.npz", tmp_path / "run"
    config.write_text(BUFFERED)
    np.savez(model, w=np.zeros(4, np.float32))
    port, go = free_port(), tmp_path / "go"
    first = coordinator(processes, config, out, port, model)
    markers = {cid: tmp_path / f"{cid}-in-fit-3" for cid in CLIENTS}
    procs = [spawn_client(f"127.0.0.1:{port}", cid, "--add", str(add), "--gate-from", "3",
                          "--fit-marker", str(markers[cid]), "--wait-for", str(go))
             for cid, add in CLIENTS.items()]
    wait_until(lambda: all(m.exists() for m in markers.values()) and version_in(out) == FIRST_LEG)
    before = load_buffered_checkpoint(out)

    # act: kill, restart with --resume, let the clients go on
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = coordinator(processes, config, out, port, model, "--resume")
    go.touch()
    rc = second.wait(180)
    _stdout, err = second.communicate()
    summaries = [summary_of(p) for p in procs]

    # assert
    assert rc == 0, err
    assert f"resuming a buffered run at version {FIRST_LEG}" in err
    after = load_buffered_checkpoint(out)
    assert before is not None and after is not None
    assert after.version == UPDATES
    assert after.records[:FIRST_LEG] == before.records  # the first leg's steps are kept
    assert after.tasks_issued > before.tasks_issued
    assert float(after.params["w"][0]) > float(before.params["w"][0]) > 0
    history = json.loads((out / "history.json").read_text())["rounds"]
    assert [(r["round"], r["status"]) for r in history] == [(k, "ok") for k in range(1, 7)]
    assert all(s["finished"] for s in summaries)


def test_an_existing_buffered_checkpoint_without_resume_is_refused(
    processes, tmp_path: Path
) -> None:
    from fedcore.engine.buffered import BufferedSnapshot
    from fedcore.storage.checkpoints import save_checkpoint

    config, model = tmp_path / "run.toml", tmp_path / "initial.npz"
    config.write_text(BUFFERED)
    np.savez(model, w=np.zeros(4, np.float32))
    save_checkpoint(tmp_path, BufferedSnapshot(version=0, params={"w": np.zeros(4, np.float32)}))

    proc = coordinator(processes, config, tmp_path, free_port(), model)
    _out, err = proc.communicate(timeout=60)

    assert proc.returncode == 2 and "--resume" in err and "buffered" in err
