"""`fedcore demo --signed`: the demo enrols its client processes and every round is signed."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from rich.console import Console

from fedcore.demo.run import DemoConfig, run_demo
from fedcore.storage.identity_files import load_roster

pytestmark = pytest.mark.timeout(300)


def test_the_signed_demo_enrols_its_clients_and_trains(tmp_path: Path) -> None:
    # arrange
    cfg = DemoConfig(clients=3, rounds=2, out_dir=tmp_path, signed=True)

    # act
    with open(tmp_path / "console.txt", "w") as console:
        records = run_demo(cfg, Console(file=console))

    # assert: every round summed all three clients through signed secure aggregation
    assert [(r.status, r.results_received) for r in records] == [("ok", 3), ("ok", 3)]
    assert all(r.metrics["secagg_survivors"] == 3 for r in records)
    assert records[0].loss is not None and records[-1].loss is not None
    assert records[-1].loss < records[0].loss  # it learns
    roster = load_roster(cfg.identities / "roster.json")
    assert set(roster.keys) == {"demo-client-0", "demo-client-1", "demo-client-2"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cfg.identities.glob("*.pem"))
