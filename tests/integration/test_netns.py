"""Rounds across real network interfaces: the coordinator in one network namespace, each
client in its own, joined by veth pairs, over mutual TLS with a token.

Needs root (CAP_NET_ADMIN); skips with the reason when `ip netns add` fails. Only addresses
inside the namespaces created here (10.231.k.0/24) are used; everything is deleted afterwards.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from fedcore.storage.checkpoints import load_checkpoint
from fedcore.storage.run_store import RunStore
from fedcore.transport.certs import generate_pki

from .conftest import wait_until

pytestmark = pytest.mark.timeout(180)

CLIENT_SCRIPT = Path(__file__).with_name("numpy_client.py")
PORT = 50051  # the server namespace is private: no clash with anything else
CLIENTS = 2


@dataclass(frozen=True)
class Topology:
    server_ns: str
    clients: list[tuple[str, str]]  # (namespace, the server's address as seen from it)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def topology() -> Iterator[Topology]:
    tag = secrets.token_hex(3)
    server_ns = f"fcs-{tag}"
    try:
        ip("netns", "add", server_ns)
    except (OSError, subprocess.CalledProcessError) as err:
        reason = getattr(err, "stderr", "") or str(err)
        pytest.skip(f"cannot create network namespaces here (needs root): {reason.strip()}")
    namespaces, veths = [server_ns], []
    try:
        ip("-n", server_ns, "link", "set", "lo", "up")
        clients = []
        for k in range(1, CLIENTS + 1):
            ns, near, far = f"fc{k}-{tag}", f"fv{tag}{k}s", f"fv{tag}{k}c"
            ip("netns", "add", ns)
            namespaces.append(ns)
            ip("link", "add", near, "type", "veth", "peer", "name", far)
            veths.append(near)
            ip("link", "set", near, "netns", server_ns)
            ip("link", "set", far, "netns", ns)
            ip("-n", server_ns, "addr", "add", f"10.231.{k}.1/24", "dev", near)
            ip("-n", server_ns, "link", "set", near, "up")
            ip("-n", ns, "addr", "add", f"10.231.{k}.2/24", "dev", far)
            ip("-n", ns, "link", "set", far, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            clients.append((ns, f"10.231.{k}.1"))
        yield Topology(server_ns, clients)
    finally:
        for ns in namespaces:  # deleting a namespace deletes the veth ends inside it
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)
        for veth in veths:  # only left in the root namespace if a move failed
            subprocess.run(["ip", "link", "del", veth], check=False, capture_output=True, timeout=30)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def test_rounds_across_namespaces_over_mutual_tls(topology: Topology, tmp_path: Path) -> None:
    # arrange: certificates naming the server's address on each link
    pki, out = tmp_path / "pki", tmp_path / "run"
    generate_pki(pki, clients=CLIENTS, hosts=tuple(a for _, a in topology.clients), token=True)
    model = tmp_path / "initial.npz"
    np.savez(model, w=np.zeros(4, np.float32))
    procs: list[subprocess.Popen[str]] = []

    def start(argv: list[str]) -> subprocess.Popen[str]:
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
        return procs[-1]

    try:
        # act
        server = start(in_ns(
            topology.server_ns, sys.executable, "-m", "fedcore.cli", "server",
            "--address", f"0.0.0.0:{PORT}", "--out", str(out), "--rounds", "2",
            "--min-clients", str(CLIENTS), "--clients-per-round", str(CLIENTS),
            "--min-results", str(CLIENTS), "--initial-model", str(model),
            "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server-key.pem"),
            "--tls-client-ca", str(pki / "ca.pem"), "--auth-token-file", str(pki / "token"),
        ))
        ns, address = topology.clients[0]
        probe = in_ns(ns, sys.executable, "-m", "fedcore.cli", "health", "--server",
                      f"{address}:{PORT}", "--tls-ca", str(pki / "ca.pem"),
                      "--tls-cert", str(pki / "client-1.pem"),
                      "--tls-key", str(pki / "client-1-key.pem"))
        wait_until(lambda: subprocess.run(probe, check=False, capture_output=True,
                                          timeout=60).returncode == 0)  # SERVING, across the link
        token = (pki / "token").read_text().strip()
        clients = [
            start(in_ns(
                ns, sys.executable, str(CLIENT_SCRIPT), f"{address}:{PORT}", f"client-{k}",
                "--add", str(k), "--tls-ca", str(pki / "ca.pem"),
                "--tls-cert", str(pki / f"client-{k}.pem"),
                "--tls-key", str(pki / f"client-{k}-key.pem"), "--auth-token", token,
            ))
            for k, (ns, address) in enumerate(topology.clients, start=1)
        ]
        _out, server_log = server.communicate(timeout=120)
        client_rcs = [c.wait(60) for c in clients]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()

    # assert
    assert server.returncode == 0, server_log[-3000:]
    assert client_rcs == [0] * CLIENTS
    snap = load_checkpoint(out)
    assert snap is not None and snap.round == 2
    np.testing.assert_array_equal(snap.params["w"], np.full(4, 2 * 1.5, np.float32))
    store = RunStore(out / "runs.sqlite")
    peers = {c["client_id"]: c["peer"] for c in store.clients()}
    store.close()
    assert "10.231.1.2" in peers["client-1"] and "10.231.2.2" in peers["client-2"]  # veth links
    assert "(client-1)" in peers["client-1"]  # the certificate's common name, bound to the id
