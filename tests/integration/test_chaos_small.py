"""The chaos harness (`benchmarks.chaos`) in a small size: 6 SDK client processes in secure
rounds over real gRPC, one client fault per round (die or stall, in some phase), malformed
requests throughout, and one SIGKILL and `--resume` of the `fedcore server` process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import chaos

pytestmark = pytest.mark.timeout(150)


def test_every_round_sums_exactly_its_survivors_or_aborts_and_none_is_lost(tmp_path: Path) -> None:
    # act
    result = chaos.run(clients=6, rounds=2, per_round=1, kills=1, seed=1, out=tmp_path,
                       timeout_s=120.0)

    # assert: the run ended, every round accounted for, each sum checked against the replay
    assert result["coord_exit"] == 0
    assert result["rounds_completed"] + result["rounds_aborted"] == 2
    assert result["rounds_completed"] >= 1
    assert result["mismatches"] == []
    assert result["rounds_lost"] == 0
    # the faults happened: the client faults as planned, the coordinator kill, malformed calls
    faults = result["faults_injected"]
    assert faults["coordinator_sigkill"] == 1
    assert sum(v for k, v in faults.items() if k.startswith(("die@", "stall@"))) >= 2
    assert sum(v for k, v in faults.items() if k.startswith("malformed:")) >= 1
    assert result["malformed_unexpected_codes"] == []


def test_the_check_catches_a_wrong_sum_and_a_summed_dropout(tmp_path: Path) -> None:
    # arrange: round 1 of 3 clients completed with results from clients 0 and 1; client 2
    # died on the key list (before masking)
    logs = tmp_path / "clients"
    logs.mkdir()
    for i, events in enumerate([["train", "step"], ["train", "step"], ["train", "die"]]):
        lines = [f'{{"t": 10.{k}, "round": 1, "step": {k}, "event": "{e}"}}'
                 for k, e in enumerate(events)]
        (logs / f"c{i:03d}.jsonl").write_text("\n".join(lines) + "\n")
    record = {"round": 1, "status": "ok", "results_received": 2}
    inc = [chaos.Incarnation(started=0.0, ended=100.0, rounds=[record])]

    right = chaos.check(np.array([0.5, 0.5, 0.0], np.float32), inc, logs, clients=3, rounds=1)
    wrong_sum = chaos.check(np.array([0.5, 0.4, 0.0], np.float32), inc, logs, clients=3, rounds=1)
    dropout_summed = chaos.check(np.array([0.0, 0.5, 0.5], np.float32), inc, logs, clients=3,
                                 rounds=1)

    assert right["mismatches"] == [] and right["survivors"] == [2]
    assert any("is not the mean" in m for m in wrong_sum["mismatches"])
    assert any("who dropped" in m for m in dropout_summed["mismatches"])


def test_a_round_completed_before_a_kill_and_missing_after_is_lost(tmp_path: Path) -> None:
    (tmp_path / "clients").mkdir()
    done = {"round": 1, "status": "ok", "results_received": 0}
    incarnations = [chaos.Incarnation(started=0.0, ended=1.0, rounds=[done]),
                    chaos.Incarnation(started=1.0, ended=2.0, rounds=[])]

    verdict = chaos.check(np.zeros(2, np.float32), incarnations, tmp_path / "clients",
                          clients=2, rounds=1)

    assert verdict["lost"] == 1


def test_an_aborted_round_must_leave_its_slot_unchanged(tmp_path: Path) -> None:
    (tmp_path / "clients").mkdir()
    failed = [chaos.Incarnation(started=0.0, ended=1.0,
                                rounds=[{"round": 1, "status": "failed", "results_received": 0}])]

    untouched = chaos.check(np.full(2, 5e-16, np.float32), failed, tmp_path / "clients",
                            clients=2, rounds=1)
    changed = chaos.check(np.array([0.5, 0.0], np.float32), failed, tmp_path / "clients",
                          clients=2, rounds=1)

    assert untouched["mismatches"] == [] and untouched["aborted"] == 1
    assert any("aborted but changed the model" in m for m in changed["mismatches"])
