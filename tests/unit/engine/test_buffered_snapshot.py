"""A buffered run's snapshot: what a restart keeps (model, version, optimizer state, counters,
records), its checkpoint bytes, and what it drops (outstanding tasks, the partial buffer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferedSnapshot
from fedcore.engine.checkpoint import (
    CheckpointError,
    buffered_checkpoint_from_bytes,
    buffered_checkpoint_to_bytes,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
)
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.protocol.messages import ResultHeader, Task, TaskResult
from fedcore.storage.checkpoints import load_buffered_checkpoint, load_checkpoint, save_checkpoint
from fedcore.strategy.server_opt import FedAdam

CONFIG = BufferedConfig(buffer_size=2, concurrency=3, num_updates=6, max_staleness=4)


def _engine() -> BufferedEngine:
    return BufferedEngine(CONFIG, FedAdam(eta=0.1), {"w": np.zeros(3, np.float32)})


def _task(engine: BufferedEngine, cid: str, now: float) -> Task:
    reply = engine.poll(cid, now=now)
    assert isinstance(reply, Task), reply
    return reply


def _answer(engine: BufferedEngine, task: Task, cid: str, delta: float, now: float) -> None:
    engine.submit(TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id,
                                                 num_examples=4),
                             tensors={"w": np.full(3, delta, np.float32)}), now=now)


def _two_steps(engine: BufferedEngine) -> None:
    """Two server steps, a decline and an expired task."""
    a, b, c = (_task(engine, cid, 0.0) for cid in ("a", "b", "c"))
    _answer(engine, a, "a", 1.0, 1.0)
    _answer(engine, b, "b", -0.5, 2.0)  # step 1
    engine.submit(TaskResult(header=ResultHeader(client_id="c", task_id=c.task_id,
                                                 num_examples=0, declined_reason="busy")),
                  now=3.0)
    d, e = _task(engine, "d", 3.0), _task(engine, "e", 3.0)
    _answer(engine, d, "d", 0.25, 4.0)
    _answer(engine, e, "e", 2.0, 5.0)  # step 2
    _task(engine, "f", 5.0)
    engine.tick(5.0 + CONFIG.task_timeout_s)  # f's task expires


def test_snapshot_restore_keeps_model_version_optimizer_state_counters_and_records() -> None:
    # arrange
    engine = _engine()
    _two_steps(engine)

    # act
    snapshot = buffered_checkpoint_from_bytes(buffered_checkpoint_to_bytes(engine.snapshot()))
    restored = BufferedEngine.restore(CONFIG, FedAdam(eta=0.1), snapshot)

    # assert
    assert restored.version == engine.version == 2
    np.testing.assert_array_equal(restored.params["w"], engine.params["w"])
    assert restored.params["w"].dtype == np.float32
    assert restored.records == engine.records
    assert (restored.declined, restored.expired, restored.stale_refused) == (1, 1, 0)
    state, back = engine.strategy.state_arrays(), restored.strategy.state_arrays()
    assert state and sorted(state) == sorted(back)
    for key in state:
        np.testing.assert_array_equal(back[key], state[key])


def test_a_restored_run_steps_exactly_as_the_uninterrupted_one() -> None:
    # arrange: the same results after the snapshot, on the original and on its restored copy
    engine = _engine()
    _two_steps(engine)
    restored = BufferedEngine.restore(CONFIG, FedAdam(eta=0.1), engine.snapshot())

    # act
    for run in (engine, restored):
        g, h = _task(run, "g", 10_000.0), _task(run, "h", 10_000.0)
        _answer(run, g, "g", 0.5, 10_001.0)
        _answer(run, h, "h", 1.5, 10_002.0)

    # assert: FedAdam's moments came back, so the third step is the same
    assert restored.version == engine.version == 3
    np.testing.assert_array_equal(restored.params["w"], engine.params["w"])


def test_outstanding_tasks_are_dropped_and_new_task_ids_do_not_repeat_old_ones() -> None:
    # arrange: one task out and one result in the buffer when the snapshot is taken
    engine = _engine()
    first, second = _task(engine, "a", 0.0), _task(engine, "b", 0.0)
    _answer(engine, first, "a", 1.0, 1.0)
    snapshot = engine.snapshot()

    # act
    restored = BufferedEngine.restore(CONFIG, FedAdam(eta=0.1), snapshot)

    # assert
    assert (restored.outstanding, restored.buffered, restored.version) == (0, 0, 0)
    with pytest.raises(EngineError) as caught:
        _answer(restored, second, "b", 1.0, 2.0)
    assert caught.value.reason is Reason.NOT_ASSIGNED
    assert _task(restored, "b", 2.0).task_id not in {first.task_id, second.task_id}


def test_a_snapshot_past_the_run_or_with_a_foreign_strategy_state_is_refused() -> None:
    engine = _engine()
    _two_steps(engine)
    snapshot = engine.snapshot()
    shorter = BufferedConfig(buffer_size=2, concurrency=3, num_updates=1)

    with pytest.raises(ValueError, match="num_updates"):
        BufferedEngine.restore(shorter, FedAdam(), snapshot)
    from fedcore.strategy import FedAvg

    with pytest.raises(ValueError, match="strategy state"):
        BufferedEngine.restore(CONFIG, FedAvg(), snapshot)


def test_checkpoint_files_say_which_kind_of_run_wrote_them(tmp_path: Path) -> None:
    # arrange
    engine = _engine()
    _two_steps(engine)
    rounds = EngineSnapshot(round=1, task_seq=1, params={"w": np.zeros(3)})

    # act
    save_checkpoint(tmp_path, engine.snapshot())
    loaded = load_buffered_checkpoint(tmp_path)

    # assert
    assert isinstance(loaded, BufferedSnapshot) and loaded.version == 2
    with pytest.raises(CheckpointError, match="buffered run's checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="rounds run's checkpoint"):
        buffered_checkpoint_from_bytes(checkpoint_to_bytes(rounds))
    assert checkpoint_from_bytes(checkpoint_to_bytes(rounds)).round == 1
    assert load_buffered_checkpoint(tmp_path / "none") is None


def test_a_damaged_buffered_checkpoint_is_refused() -> None:
    data = buffered_checkpoint_to_bytes(_engine().snapshot())

    with pytest.raises(CheckpointError, match="damaged"):
        buffered_checkpoint_from_bytes(data[:-1])
    with pytest.raises(CheckpointError, match="damaged"):
        buffered_checkpoint_from_bytes(data.replace(b'"version": 0', b'"version": 1'))
