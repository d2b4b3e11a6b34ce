"""Signed secure aggregation over real gRPC: clients enrolled with `fedcore identity`, one
killed before signing the survivor list, and a client that is not on the roster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedcore.cli import main
from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.storage.identity_files import load_roster

pytestmark = pytest.mark.timeout(180)
SCRIPT = Path(__file__).with_name("secagg_client.py")
N = 6


def test_signed_rounds_over_grpc_give_the_exact_mean_and_keep_strangers_out(
    tmp_path: Path, start_coordinator, processes  # type: ignore[no-untyped-def]
) -> None:
    # arrange: the operator enrols N clients; the coordinator and every client get the roster
    roster_path = tmp_path / "roster.json"
    for i in range(N):
        assert main(["identity", "--client-id", f"site-{i}", "--key", str(tmp_path / f"{i}.pem"),
                     "--roster", str(roster_path)]) == 0
    config = EngineConfig(
        num_rounds=2, train=SelectionConfig(fraction=1.0, min_available=N, min_results=4),
        evaluate=None, round_timeout_s=120.0,
        secagg=SecureAggregationConfig(max_clients=N, phase_timeout_s=10.0, clip=1.0,
                                       roster=load_roster(roster_path)),
    )
    server = start_coordinator(config, {"w": np.zeros((3, 4), np.float32),
                                        "b": np.zeros(4, np.float32)})  # secagg_client.py's model
    adds = {i: 0.01 * (i + 1) for i in range(N)}
    dies = 2  # killed when the consistency request arrives, after its masked input

    def client(cid: str, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, str(SCRIPT), f"127.0.0.1:{server.port}", cid,
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(proc)
        return proc

    procs = {i: client(f"site-{i}", "--add", str(adds[i]),
                       "--secagg-key", str(tmp_path / f"{i}.pem"),
                       "--secagg-roster", str(roster_path),
                       *(["--die-at-step", "3"] if i == dies else [])) for i in range(N)}
    stranger = client("mallory", "--add", "5")  # no identity, not on the roster

    # act
    _, stranger_err = stranger.communicate(timeout=60)
    assert server.wait(150), "the run did not finish"

    # assert: the stranger was refused at Join; round 1 sums all N (the killed client's masked
    # input arrived), round 2 the N - 1 alive; the killed one died where it was told to
    assert stranger.returncode != 0 and "not on this federation's roster" in stranger_err
    first, second = server.engine.records
    assert (first.status, first.results_received) == ("ok", N), first.reason
    assert (second.status, second.results_received) == ("ok", N - 1), second.reason
    step1 = float(np.mean(list(adds.values())))
    step2 = float(np.mean([adds[i] for i in range(N) if i != dies]))
    np.testing.assert_allclose(server.engine.params["w"], np.full((3, 4), step1 + step2), atol=1e-6)
    assert procs[dies].wait(30) == 3
