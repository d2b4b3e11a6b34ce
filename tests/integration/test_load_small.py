"""The load harness (`benchmarks.load`) in a small size: 50 real gRPC clients in two worker
processes and 10 stalled upload streams against one `fedcore server` process, 2 rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import load

pytestmark = pytest.mark.timeout(120)


def test_fifty_clients_complete_every_round_beside_stalled_uploads(tmp_path: Path) -> None:
    # act: the stalled streams are open before the clients join, and stay open to the end
    result = load.run(clients=50, rounds=2, procs=2, params=256, stallers=10,
                      out=tmp_path / "coordinator", stall_from=0, timeout_s=90.0)

    # assert: every client joined, answered every round and heard the run end
    assert result["coord_exit"] == 0
    assert result["client_errors"] == 0, result["first_errors"]
    assert result["rounds_ok"] == 2
    assert result["results_per_round"] == [50, 50]
    assert result["clients_finished"] == 50
    assert result["stalled_streams"] == 10 and result["rounds_with_stallers"] == 2
    assert 0 < result["join_p50_s"] <= result["join_p99_s"]
    # the coordinator's memory and CPU were read from /proc while it ran
    assert 0 < result["coord_rss_mb"] <= result["coord_hwm_mb"]
    assert result["coord_cpu_s"] > 0


def test_proc_stats_reads_this_process() -> None:
    import os

    stats = load.proc_stats(os.getpid())

    assert 0 < stats.rss_mb <= stats.hwm_mb and stats.cpu_s > 0
