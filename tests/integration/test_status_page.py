"""The live status page (`fedcore server --status-port`): loaded in headless Chromium while a
real coordinator runs rounds over gRPC, and read over plain HTTP for what a browser need not
check (escaping, the JSON twin, errors).

Chromium is Debian's `chromium` package (`.ci/run` installs it). Without it the browser test
skips locally and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedcore.client import BackgroundClient, EvalResult, FitResult, FunctionalApp
from fedcore.config import ConfigError, load_config
from fedcore.coordinator.process import run_coordinator
from fedcore.coordinator.status_page import StatusBoard, StatusPage
from fedcore.engine.records import RoundRecord, RoundStatus

from .conftest import free_port, wait_until

pytestmark = pytest.mark.timeout(120)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def dump_dom(url: str, profile: Path) -> str:
    """The DOM headless Chromium builds from `url` (its scripts and layout run)."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    args = [CHROMIUM, "--headless", "--disable-gpu", f"--user-data-dir={profile}", "--dump-dom",
            url]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to sandbox as root
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout


class SteppingApp:
    """Adds 1 to `w` per fit and reports accuracy = w / 10; the third fit blocks until
    `release` is set, so the run stays open, mid-round, while the page is read."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.fits = 0

    def app(self) -> FunctionalApp:
        return FunctionalApp(get_parameters=lambda: {"w": np.zeros(2, np.float32)},
                             fit=self.fit, evaluate=self.evaluate)

    def fit(self, params: Any, config: Any) -> FitResult:
        self.fits += 1
        if self.fits >= 3:
            self.release.wait(60)
        return FitResult(params={"w": params["w"] + 1}, num_examples=10,
                         metrics={"loss": 1.0 / self.fits})

    def evaluate(self, params: Any, config: Any) -> EvalResult:
        w = float(params["w"].mean())
        return EvalResult(loss=2.0 - w / 10, num_examples=10, metrics={"accuracy": w / 10})


def test_the_page_shows_the_rounds_in_a_browser(tmp_path: Path) -> None:
    # arrange: a coordinator with its status page, two in-process clients that do two rounds
    # and then hold the third open
    port = free_port()
    np.savez(tmp_path / "initial.npz", w=np.zeros(2, np.float32))
    plan = load_config(None, {
        "server.initial_model": str(tmp_path / "initial.npz"),
        "server.address": "127.0.0.1:0", "server.out_dir": str(tmp_path / "run"),
        "server.status_port": port, "server.long_poll_s": 0.5,
        "rounds.num_rounds": 3, "rounds.clients_per_round": 2, "rounds.min_available": 2,
        "rounds.min_results": 2, "rounds.round_timeout_s": 90.0,
    })
    stop, release = threading.Event(), threading.Event()
    records: list[RoundRecord] = []
    started: list[int] = []
    serving = threading.Thread(target=run_coordinator, args=(plan,), kwargs={
        "stop": stop, "on_round": records.append,
        "on_start": lambda server, _: started.append(server.port)})
    serving.start()
    clients: list[BackgroundClient] = []
    try:
        wait_until(lambda: bool(started) or not serving.is_alive(), timeout=60)
        assert started, "the coordinator did not start"
        # the page answers before any client joined
        before = fetch_json(port)
        assert before["state"] == "waiting" and before["rounds"] == []
        clients = [BackgroundClient(SteppingApp(release).app(), f"127.0.0.1:{started[0]}",
                                    client_id=f"phone-{i}") for i in range(2)]
        for client in clients:
            client.start()

        # act: two rounds close; the third is open
        wait_until(lambda: len(records) >= 2, timeout=90)
        dom = dump_dom(f"http://127.0.0.1:{port}/", tmp_path / "chromium")
    finally:
        release.set()
        stop.set()
        serving.join(30)
        for client in clients:
            client.stop(timeout=10)

    # assert: state, clients, both rounds with their numbers, and the plots
    state = re.search(r'<p id="state" data-state="(\w+)">([^<]*)</p>', dom)
    assert state is not None, dom[:2000]
    assert state.group(1) in ("training", "evaluating")
    assert "of 3" in state.group(2)
    assert 'data-joined="2"' in dom
    assert "phone-0" in dom and "phone-1" in dom
    rows = re.findall(r"<tr(?: class=\"failed\")?><td>(\d+)</td><td>(\w+)</td><td>[^<]*</td><td>([\d/]+)</td>"
                      r"<td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>", dom)
    by_round = {int(r[0]): r for r in rows}
    assert set(by_round) >= {1, 2}
    assert by_round[1][1] == "ok" and by_round[1][2] == "2/2"
    # after round k the model's w is k, so the evaluation reports accuracy k / 10
    assert by_round[1][4] == "0.100" and by_round[2][4] == "0.200"
    assert by_round[2][3] == f"{2.0 - 0.2:.4f}"
    plots = re.findall(r'<svg [^>]*aria-label="([^"]+)"', dom)
    assert plots[:2] == ["accuracy", "loss"]
    accuracy_line = re.search(r'data-name="test accuracy" data-points="(\d+)"', dom)
    assert accuracy_line is not None and int(accuracy_line.group(1)) >= 2
    assert '<meta http-equiv="refresh"' in dom  # the run is not over: the page reloads


def fetch(port: int, path: str = "/") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def fetch_json(port: int) -> dict[str, Any]:
    status, body = fetch(port, "/status.json")
    assert status == 200
    return json.loads(body)  # type: ignore[no-any-return]


def record(n: int, **kwargs: Any) -> RoundRecord:
    values: dict[str, Any] = {
        "round": n, "status": RoundStatus.OK, "clients_selected": 3, "results_received": 3,
        "train_loss": 1.0, "loss": 0.9, "accuracy": 0.5, "eval_clients": 3, "duration_s": 1.0,
    }
    values.update(kwargs)
    return RoundRecord(**values)


def test_the_page_escapes_what_clients_and_rounds_say_and_plots_epsilon() -> None:
    phase = ["training"]
    board = StatusBoard(num_rounds=5, min_clients=2, phase=lambda: phase[0])
    board.client_joined("<script>alert(1)</script>", "ipv4:127.0.0.1:5555")
    board.round_completed(record(1, metrics={"epsilon": 0.7}))
    board.round_completed(record(2, status=RoundStatus.FAILED, reason="<b>deadline</b>",
                                 loss=None, accuracy=None, metrics={"epsilon": 1.1}))
    page = StatusPage(board)
    port = page.serve(0)
    try:
        status, body = fetch(port)
        missing, _ = fetch(port, "/nothing")
        snap = fetch_json(port)
        phase[0] = "done"
        _, done = fetch(port)
    finally:
        page.close()

    assert status == 200 and missing == 404
    assert "<script>alert" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<b>deadline</b>" not in body and "&lt;b&gt;deadline&lt;/b&gt;" in body
    assert 'aria-label="epsilon spent"' in body and 'data-name="epsilon" data-points="2"' in body
    assert [r["round"] for r in snap["rounds"]] == [1, 2]
    assert snap["rounds"][1]["epsilon"] == {"epsilon": 1.1}
    assert snap["rounds"][1]["status"] == "failed"
    assert snap["clients_joined"] == 1
    assert "finished: 2 of 5 rounds" in done and "http-equiv=\"refresh\"" not in done


def test_a_status_port_in_use_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        page = StatusPage(StatusBoard(num_rounds=1, min_clients=1, phase=lambda: "waiting"))
        with pytest.raises(ConfigError, match="--status-port"):
            page.serve(port)


def test_a_status_port_out_of_range_names_the_flag() -> None:
    with pytest.raises(ConfigError, match="status_port"):
        load_config(None, {"server.status_port": 70000})
