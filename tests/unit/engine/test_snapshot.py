"""Snapshots at round boundaries, restore, and the checkpoint file that carries them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.engine import Phase, RoundEngine, SelectionConfig
from fedcore.engine.checkpoint import CheckpointError
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.storage.checkpoints import FILENAME, load_checkpoint, save_checkpoint
from fedcore.strategy import FedAvg

from .conftest import Harness, engine_config

TWO = SelectionConfig(count=2, min_available=2)


def test_no_snapshot_before_a_round_completes(make_harness) -> None:
    h = make_harness(clients=2, num_rounds=2)

    assert h.engine.snapshot() is None


def test_snapshot_is_the_state_after_the_last_completed_round(make_harness) -> None:
    h = make_harness(clients=2, num_rounds=3, train=TWO)
    h.play_round({"c0": (1.0, 1), "c1": (3.0, 1)})
    h.tasks()  # round 2 is open now: the snapshot still describes round 1's end

    snap = h.engine.snapshot()

    assert snap is not None and snap.round == 1
    assert [r.round for r in snap.records] == [1]
    np.testing.assert_array_equal(snap.params["w"], np.array([3.0, 4.0], np.float32))


def test_restored_engine_continues_exactly_like_the_original(make_harness) -> None:
    # arrange: one engine runs 3 rounds; another is restored after round 1 and runs the rest
    def play(h: Harness, k: int) -> None:
        h.play_round({"c0": (float(k), 1), "c1": (2.0 * k, 3)})

    straight = make_harness(clients=2, num_rounds=3, train=TWO)
    for k in (1, 2, 3):
        play(straight, k)
    first = make_harness(clients=2, num_rounds=3, train=TWO)
    play(first, 1)
    snap = first.engine.snapshot()
    assert snap is not None

    # act
    resumed = make_harness(clients=0, num_rounds=3, train=TWO)
    resumed.engine = RoundEngine.restore(engine_config(num_rounds=3, train=TWO), FedAvg(), snap)
    resumed.join("c0", "c1")
    for k in (2, 3):
        play(resumed, k)

    # assert
    assert resumed.engine.phase is Phase.DONE
    assert resumed.params_bytes() == straight.params_bytes()
    assert [r.round for r in resumed.engine.records] == [1, 2, 3]


def test_restore_of_a_finished_run_is_done() -> None:
    snap = EngineSnapshot(round=2, task_seq=2, params={"w": np.zeros(2, np.float32)})

    engine = RoundEngine.restore(engine_config(num_rounds=2), FedAvg(), snap)

    assert engine.phase is Phase.DONE


def test_restore_past_num_rounds_is_refused() -> None:
    snap = EngineSnapshot(round=5, task_seq=5, params={"w": np.zeros(2, np.float32)})

    with pytest.raises(ValueError, match="past num_rounds"):
        RoundEngine.restore(engine_config(num_rounds=2), FedAvg(), snap)


def test_checkpoint_round_trips(make_harness, tmp_path: Path) -> None:
    h = make_harness(clients=2, num_rounds=2, train=TWO)
    h.play_round({"c0": (1.0, 1), "c1": (2.0, 1)}, metrics={"c0": {"loss": 0.5}})
    snap = h.engine.snapshot()
    assert snap is not None
    snap = EngineSnapshot(
        round=snap.round, task_seq=snap.task_seq, params=snap.params, records=snap.records,
        strategy_state={"m": np.arange(3, dtype=np.float64)},
    )

    save_checkpoint(tmp_path, snap)
    back = load_checkpoint(tmp_path)

    assert back is not None
    assert (back.round, back.task_seq, back.records) == (snap.round, snap.task_seq, snap.records)
    assert {k: v.tobytes() for k, v in back.params.items()} == {
        k: v.tobytes() for k, v in snap.params.items()
    }
    np.testing.assert_array_equal(back.strategy_state["m"], np.arange(3, dtype=np.float64))
    assert (tmp_path / FILENAME).stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [FILENAME]  # no temp file left behind


def test_missing_checkpoint_is_none(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path) is None


@pytest.mark.parametrize("damage", [b"", b"\x80\x03pickle", b"FEDCORE-CHECKPOINT 1\n\x05"])
def test_damaged_checkpoint_is_refused_by_name(tmp_path: Path, damage: bytes) -> None:
    (tmp_path / FILENAME).write_bytes(damage)

    with pytest.raises(CheckpointError, match=FILENAME):
        load_checkpoint(tmp_path)


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    snap = EngineSnapshot(round=1, task_seq=1, params={"w": np.ones(8, np.float32)})
    path = save_checkpoint(tmp_path, snap)
    path.write_bytes(path.read_bytes()[:-4])

    with pytest.raises(CheckpointError, match="payload"):
        load_checkpoint(tmp_path)
