"""The example apps in clients/ run as processes against a real coordinator on loopback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fedcore.engine import EngineConfig, SelectionConfig

pytestmark = pytest.mark.timeout(90)

CLIENTS = Path(__file__).parents[2] / "clients"


def example(tmp_path: Path, name: str, seed: int) -> Path:
    path = tmp_path / name
    subprocess.run([sys.executable, str(CLIENTS / "csv_client.py"), "--write-example", str(path),
                    "--seed", str(seed)], check=True)
    return path


def get(url: str, method: str = "GET") -> dict[str, object]:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def test_csv_clients_train_without_torch(start_coordinator, tmp_path: Path):
    # arrange: no initial model; the first client's INITIALIZE task provides it
    config = EngineConfig(num_rounds=3, train=SelectionConfig(count=2, min_available=2,
                                                              min_results=2))
    server = start_coordinator(config)
    address = f"127.0.0.1:{server.port}"

    # act
    procs = [
        subprocess.Popen(
            [sys.executable, str(CLIENTS / "csv_client.py"), address,
             str(example(tmp_path, f"site{k}.csv", k)), "--state-dir", str(tmp_path / f"s{k}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for k in (1, 2)
    ]
    assert server.wait(60)
    outputs = [p.communicate(timeout=30) for p in procs]

    # assert
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert all(s["finished"] and not s["torch_imported"] for s in summaries)
    assert all({1, 2, 3} <= set(s["rounds"]) for s in summaries)
    records = server.engine.records
    assert [r.status for r in records] == ["ok"] * 3
    assert records[-1].accuracy is not None and records[-1].accuracy > 0.6


def test_http_service_answers_while_training_and_stops_on_sigterm(start_coordinator, tmp_path):
    # arrange
    config = EngineConfig(num_rounds=3, train=SelectionConfig(count=1), evaluate=None)
    server = start_coordinator(config)
    proc = subprocess.Popen(
        [sys.executable, str(CLIENTS / "http_service.py"), f"127.0.0.1:{server.port}",
         str(example(tmp_path, "svc.csv", 3)), "--port", "0", "--state-dir", str(tmp_path / "s")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("listening on "), proc.stderr.read()  # type: ignore[union-attr]
        url = line.split()[-1]

        # act: keep asking while the run goes on, then after it is over
        phases = set()
        while not server.finished:
            phases.add(get(f"{url}/status")["phase"])
        while get(f"{url}/status")["running"]:
            time.sleep(0.02)
        after = get(f"{url}/status")
        prediction = get(f"{url}/predict?x=0.1,0.2,0.3,0.4,0.5")
        paused = get(f"{url}/pause", method="POST")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # assert
    assert proc.returncode == 0, err
    assert [r.status for r in server.engine.records] == ["ok"] * 3
    assert phases and after["reported"] == 4 and after["phase"] == "stopped"
    assert 0.0 < prediction["p"] < 1.0
    assert paused["accepting"] is False
    assert json.loads(out.strip().splitlines()[-1])["stopped_cleanly"] is True


def test_numpy_only_client_never_imports_torch(tmp_path: Path):
    # arrange: the whole client path, in a fresh interpreter, with no coordinator to reach
    code = (
        "import sys, numpy as np\n"
        "from fedcore.client import BackgroundClient, FunctionalApp, FitResult\n"
        "app = FunctionalApp(get_parameters=lambda: {'w': np.zeros(2)},\n"
        "                    fit=lambda p, c: FitResult(params=p, num_examples=1))\n"
        f"c = BackgroundClient(app, '127.0.0.1:1', state_dir={str(tmp_path / 's')!r})\n"
        "c.start(); c.stop(timeout=10)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'opacus')))\n"
    )

    # act
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    # assert
    assert out.stdout.strip() == "[]"
