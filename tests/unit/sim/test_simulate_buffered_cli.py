"""`fedcore simulate` with a [buffered] table runs FedBuff end to end: a few server steps of a
tiny model, each a row of the history."""

from __future__ import annotations

import json
from pathlib import Path

from fedcore.cli import main

TINY_BUFFERED = """
[simulation]
clients = 6
model = "logreg"

[data]
dataset = "synthetic"
samples_per_client = 20

[strategy]
name = "fedadam"
batch_size = 5
learning_rate = 0.05

[buffered]
buffer_size = 2
concurrency = 3
max_staleness = 5
"""


def test_simulate_with_a_buffered_table_runs_fedbuff_and_writes_the_history(
        tmp_path: Path) -> None:
    # arrange
    config = tmp_path / "buffered.toml"
    config.write_text(TINY_BUFFERED)
    out = tmp_path / "out"

    # act
    code = main(["simulate", "--config", str(config), "--num-updates", "3", "--out", str(out)])

    # assert
    assert code == 0
    rounds = json.loads((out / "history.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["results_received"] == 2 and "mean_staleness" in r for r in rounds)
    assert (out / "training.png").exists()


def test_simulate_refuses_rounds_flags_with_buffered(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "buffered.toml"
    config.write_text(TINY_BUFFERED)

    code = main(["simulate", "--config", str(config), "--rounds", "4", "--out", str(tmp_path)])

    assert code != 0
    assert "rounds.num_rounds" in capsys.readouterr().err
