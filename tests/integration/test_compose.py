"""The compose demo for real: build both images, `docker-compose up` the repository's
docker-compose.yml, and check what a user would, including a coordinator killed mid-run
that resumes from its checkpoint volume while the clients reconnect.

Needs a Docker engine it can start (root, dockerd, docker-compose: `.ci/run` installs
Debian's docker.io, docker-compose and debootstrap); skips with the reason otherwise, except
under CI=true, where only an explicit FEDCORE_SKIP_DOCKER (set by .ci/run when it could not
install them) skips it. tests/integration/docker_env.py starts the engine and makes the base
image. On a 2-core machine: about 100 s for the compose run, plus 45 s of image builds after
a code change, or about 5.5 minutes from an empty layer cache (debootstrap, pip).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .docker_env import Engine, Unavailable, build_images, ensure_base, missing

pytestmark = pytest.mark.timeout(1500)

PROJECT = "fedcorecomposetest"
ROUNDS = 60      # the example's 20 rounds (rounds.num_rounds) last ~2 s: too short to pause in
COMMAND = ["--log-format", "json", "server", "--config", "/app/server/coordinator.example.toml",
           "--resume", "--rounds", str(ROUNDS)]  # docker-compose.yml's, with more rounds
CLIENTS = 3      # docker-compose.yml: client replicas
KILL_AFTER = 2   # rounds completed before the coordinator is killed


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"no Docker engine under CI: {reason} (.ci/run sets FEDCORE_SKIP_DOCKER "
                    "with the reason when it cannot install Docker)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    if os.environ.get("FEDCORE_SKIP_DOCKER"):
        pytest.skip(os.environ["FEDCORE_SKIP_DOCKER"])
    why = missing()
    if why:
        skip_or_fail(why)
    eng = Engine()
    try:
        eng.start()
        build_base = ensure_base(eng)
    except Unavailable as err:
        eng.stop()
        skip_or_fail(str(err))
    try:
        build_images(eng, build_base)
        yield eng
    finally:
        eng.compose(PROJECT, "down", "-v", "--remove-orphans", check=False, timeout=120)
        eng.stop()


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 240,
             poll: float = 0.5, diagnose: Callable[[], str] = lambda: "") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:.0f}s\n{diagnose()}")
        time.sleep(poll)


def logs(eng: Engine, service: str) -> str:
    return eng.compose(PROJECT, "logs", "--no-color", "--no-log-prefix", service,
                       check=False, timeout=60).stdout


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def container(eng: Engine, service: str) -> list[str]:
    return eng.compose(PROJECT, "ps", "-a", "-q", service, timeout=60).stdout.split()


def state(eng: Engine, cid: str, field: str) -> str:
    return eng.docker("inspect", "-f", "{{" + field + "}}", cid, timeout=30).stdout.strip()


def rounds_done(eng: Engine) -> list[int]:
    """Round numbers the coordinator logged as completed ok, in log order (all its runs)."""
    return [int(m.group(1)) for rec in json_lines(logs(eng, "coordinator"))
            for m in [re.match(r"round (\d+) ok", str(rec.get("message", "")))] if m]


def metrics() -> str:
    try:
        with urllib.request.urlopen("http://127.0.0.1:9100/metrics", timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:
        return ""


def rounds_ok(text: str) -> float:
    return gauge(text, 'fedcore_rounds_completed_total{status="ok"}') or 0


def gauge(text: str, name: str) -> float | None:
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_compose_demo_runs_its_rounds_through_a_coordinator_restart(
    engine: Engine, tmp_path: Path
) -> None:
    eng = engine
    override = tmp_path / "more-rounds.yml"
    override.write_text(json.dumps({"services": {"coordinator": {"command": COMMAND}}}))
    eng.overrides = [override]  # JSON is YAML

    def diagnose() -> str:
        return logs(eng, "coordinator")[-3000:] + logs(eng, "client")[-2000:]

    # act: bring the demo up as a user would
    eng.compose(PROJECT, "up", "-d", timeout=300)

    # the one-shot certs service exits 0; the coordinator turns healthy; 3 clients join
    [certs] = container(eng, "certs")
    assert state(eng, certs, ".State.Status") == "exited"
    assert state(eng, certs, ".State.ExitCode") == "0", logs(eng, "certs")
    [coordinator] = container(eng, "coordinator")
    wait_for("coordinator healthy", lambda: state(eng, coordinator, ".State.Health.Status")
             == "healthy", diagnose=diagnose)
    assert len(container(eng, "client")) == CLIENTS
    text = wait_for("metrics with 3 connected clients on the published port 9100",
                    lambda: (t := metrics()) and gauge(t, "fedcore_clients_connected") == CLIENTS
                    and t, diagnose=diagnose)
    assert (gauge(text, "fedcore_client_joins_total") or 0) >= CLIENTS

    # act: kill the coordinator mid-run (SIGKILL: no clean shutdown), then start it again.
    # Rounds take a fraction of a second: the clients are paused (frozen) first, so that the
    # coordinator is killed inside a round that cannot end, and thawed once it is back.
    wait_for(f"{KILL_AFTER} rounds", lambda: rounds_ok(metrics()) >= KILL_AFTER, poll=0.05,
             diagnose=diagnose)
    clients = container(eng, "client")
    eng.docker("pause", *clients)
    time.sleep(2)  # a round already settled by the clients' results may still be closing
    eng.docker("kill", coordinator)
    wait_for("coordinator killed", lambda: state(eng, coordinator, ".State.Running") == "false")
    before = rounds_done(eng)
    assert before[-1] < ROUNDS, "the run ended before the coordinator was killed"
    eng.compose(PROJECT, "start", "coordinator")
    eng.docker("unpause", *clients)

    # assert: it resumes after its last checkpointed round, the clients reconnect, all rounds end
    exit_code = eng.docker("wait", coordinator, timeout=600).stdout.strip()
    coordinator_log = json_lines(logs(eng, "coordinator"))
    assert exit_code == "0", diagnose()
    resumed = [int(m.group(1)) for rec in coordinator_log
               for m in [re.match(r"resuming after round (\d+)", str(rec.get("message", "")))] if m]
    # (a round logged in the instant before the kill may have missed its checkpoint)
    assert len(resumed) == 1 and before[-1] - 1 <= resumed[0] <= before[-1], diagnose()
    after = rounds_done(eng)[len(before):]
    assert after == list(range(resumed[0] + 1, ROUNDS + 1)), diagnose()
    for cid in container(eng, "client"):
        assert eng.docker("wait", cid, timeout=120).stdout.strip() == "0", diagnose()
    done = [m for line in logs(eng, "client").splitlines()
            for m in [re.search(r"done: (\d+) tasks, \d+ refused, (\d+) reconnects", line)] if m]
    assert len(done) == CLIENTS, diagnose()
    assert all(int(m.group(2)) >= 1 for m in done), "a client did not reconnect after the restart"

    # the checkpoint volume's history: every round ok with all clients, the expected accuracy
    history = json.loads(eng.docker(
        "run", "--rm", "-v", f"{PROJECT}_coordinator-data:/data:ro", "--entrypoint", "cat",
        "fedcore-coordinator:latest", "/data/run/history.json").stdout)["rounds"]
    assert [r["round"] for r in history] == list(range(1, ROUNDS + 1))
    assert all(r["status"] == "ok" and r["results_received"] == CLIENTS for r in history)
    assert history[-1]["accuracy"] >= 0.88  # 0.93 in a run without the kill
    assert not [rec for rec in coordinator_log if rec.get("level") == "ERROR"], diagnose()
    assert not [rec for rec in coordinator_log if rec.get("logger", "").startswith("matplotlib")
                and rec.get("level") != "INFO"], "matplotlib has no writable config directory"

    # act: down -v leaves no container, network or volume of the project behind
    eng.compose(PROJECT, "down", "-v", timeout=120)
    label = f"label=com.docker.compose.project={PROJECT}"
    assert eng.docker("ps", "-aq", "--filter", label).stdout.split() == []
    assert eng.docker("network", "ls", "-q", "--filter", label).stdout.split() == []
    assert eng.docker("volume", "ls", "-q", "--filter", label).stdout.split() == []
