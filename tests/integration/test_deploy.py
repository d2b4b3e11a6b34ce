"""The deployment files: docker-compose.yml validates, and every command the containers run
(certs, coordinator, clients, health probes) works as a plain process on loopback.

No Docker engine runs here. The commands are taken from docker-compose.yml and the
Dockerfiles and run with container paths mapped to a temporary directory, `coordinator:8080`
to a free loopback port, and one round instead of twenty.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fedcore.storage.run_store import RunStore

from .conftest import free_port, wait_until

yaml = pytest.importorskip("yaml", reason="PyYAML (the [dev] extra) reads docker-compose.yml")

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILES = {"server": ROOT / "server" / "Dockerfile", "client": ROOT / "clients" / "Dockerfile"}


def dockerfile_instruction(path: Path, name: str) -> str:
    """The text of the last `name` instruction, continuation lines joined."""
    logical, found = "", ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        logical += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            if logical.split(maxsplit=1)[:1] == [name]:
                found = logical.split(maxsplit=1)[1].strip()
            logical = ""
    return found


class Mapped:
    """Container paths and addresses, mapped onto this machine."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port, self.metrics_port = free_port(), free_port()
        self.pairs = [
            ("/app/server/coordinator.example.toml", str(tmp / "coordinator.toml")),
            ("/certs", str(tmp / "certs")),
            ("/data", str(tmp / "data")),
            ("/partitions", str(tmp / "partitions")),
            ("coordinator:8080", f"localhost:{self.port}"),
            ("localhost:8080", f"localhost:{self.port}"),
        ]
        toml = (ROOT / "server" / "coordinator.example.toml").read_text()
        toml = toml.replace('"0.0.0.0:8080"', f'"127.0.0.1:{self.port}"')
        toml = toml.replace("metrics_port = 9100", f"metrics_port = {self.metrics_port}")
        toml = toml.replace('metrics_address = "0.0.0.0"', 'metrics_address = "127.0.0.1"')
        (tmp / "coordinator.toml").write_text(self.text(toml))

    def text(self, value: str) -> str:
        for old, new in self.pairs:
            value = value.replace(old, new)
        return value

    def argv(self, entrypoint: list[str], command: list[str]) -> list[str]:
        """The container's argv as a process: `fedcore` is `python -m fedcore.cli`."""
        assert entrypoint == ["fedcore"]
        return [sys.executable, "-m", "fedcore.cli", *(self.text(a) for a in command)]

    def shell(self, command: str, environment: dict[str, str]) -> list[str]:
        """A shell-form command (HEALTHCHECK CMD) with the service's environment expanded."""
        words = shlex.split(self.text(command))
        expanded = [
            part for w in words
            for part in (shlex.split(self.text(environment.get(w[1:], ""))) if w.startswith("$")
                         else [w])
        ]
        assert expanded[0] == "fedcore"
        return [sys.executable, "-m", "fedcore.cli", *expanded[1:]]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # type: ignore[no-any-return]


def test_compose_file_validates() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (.ci/run installs Debian's docker-compose)")

    result = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr


def test_compose_brings_up_a_coordinator_and_three_tls_clients(compose: dict[str, Any]) -> None:
    services = compose["services"]

    assert {"certs", "coordinator", "client"} <= set(services)
    assert services["client"]["deploy"]["replicas"] >= 3
    assert "--partition" in services["client"]["command"]
    assert "auto" in services["client"]["command"]
    assert "9100:9100" in services["coordinator"]["ports"]
    assert "--tls-ca" in services["client"]["command"]
    assert "/certs/ca.pem" in (ROOT / "server" / "coordinator.example.toml").read_text()


@pytest.mark.parametrize("which", ["server", "client"])
def test_images_are_slim_cpu_only_non_root_with_a_health_check(which: str) -> None:
    path = DOCKERFILES[which]

    assert dockerfile_instruction(path, "FROM") == "python:3.11-slim"
    assert "download.pytorch.org/whl/cpu" in dockerfile_instruction(path, "RUN") or (
        "download.pytorch.org/whl/cpu" in path.read_text()
    )
    assert "-c constraints.txt" in path.read_text()
    assert dockerfile_instruction(path, "USER") == "fedcore"
    assert "fedcore health" in dockerfile_instruction(path, "HEALTHCHECK")
    assert json.loads(dockerfile_instruction(path, "ENTRYPOINT")) == ["fedcore"]


def test_the_containers_commands_run_a_tls_federation(
    compose: dict[str, Any], processes: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    # arrange: the commands, exactly as compose and the Dockerfiles give them
    m = Mapped(tmp_path)
    services = compose["services"]
    entry = json.loads(dockerfile_instruction(DOCKERFILES["server"], "ENTRYPOINT"))
    client_entry = json.loads(dockerfile_instruction(DOCKERFILES["client"], "ENTRYPOINT"))
    server_probe = dockerfile_instruction(DOCKERFILES["server"], "HEALTHCHECK").split(" CMD ", 1)[1]
    client_probe = dockerfile_instruction(DOCKERFILES["client"], "HEALTHCHECK").split(" CMD ", 1)[1]

    def start(argv: list[str], hostname: str = "coordinator") -> subprocess.Popen[str]:
        env = {**os.environ, "HOSTNAME": hostname}  # as Docker sets it in each container
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        processes.append(proc)
        return proc

    # act: the one-shot certs service, then the coordinator (1 round), probes, 3 clients
    certs = subprocess.run(m.argv(entry, services["certs"]["command"]), check=False, capture_output=True,
                           text=True, timeout=60)
    assert certs.returncode == 0, certs.stderr
    coordinator = start([*m.argv(entry, services["coordinator"]["command"]), "--rounds", "1"])
    server_env = services["coordinator"]["environment"]
    wait_until(lambda: subprocess.run(m.shell(server_probe, server_env), check=False, capture_output=True,
                                      timeout=30).returncode == 0)
    clients = [
        start(m.argv(client_entry, services["client"]["command"]), hostname=f"c0ffee{k}")
        for k in range(3)
    ]
    client_env = services["client"]["environment"]
    client_health = subprocess.run(m.shell(client_probe, client_env), check=False, capture_output=True,
                                   text=True, timeout=30)
    _out, coordinator_log = coordinator.communicate(timeout=180)
    client_rcs = [c.wait(60) for c in clients]

    # assert
    assert coordinator.returncode == 0, coordinator_log[-3000:]
    assert client_health.returncode == 0, client_health.stderr
    assert client_rcs == [0, 0, 0]
    assert all(json.loads(line)["level"] for line in coordinator_log.splitlines() if line)
    run = tmp_path / "data" / "run"
    history = json.loads((run / "history.json").read_text())["rounds"]
    assert [r["status"] for r in history] == ["ok"]
    assert all(r["results_received"] == 3 for r in history)
    assert (run / "checkpoint.fcp").exists()
    store = RunStore(run / "runs.sqlite")
    assert len(store.clients()) == 3
    store.close()
    assert sorted(p.name for p in (tmp_path / "partitions").iterdir()) == [
        "partition-0", "partition-1", "partition-2"
    ]
    key_modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "certs").glob("*key.pem")}
    assert set(key_modes.values()) == {0o600}
    assert os.stat(tmp_path / "certs" / "token").st_mode & 0o777 == 0o600
