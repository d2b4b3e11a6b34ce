"""Round-based checkpoints written before the distributed-DP ledger was kept, pinned: one whose
records report no distributed ε reads with an empty ledger (nothing to price again), one whose
records report either kind of distributed ε (exact or approximate) is refused as damaged, since
the price of those rounds is unknown; and a round record's status and metrics read back as
their types; the tensors a checkpoint decodes to are the snapshot's own (writeable, and
unchanged when the buffer they were read from is reused)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fedcore.dp.distributed_accountant import APPROX_KEY, EXACT_KEY
from fedcore.engine.buffered import BufferedSnapshot
from fedcore.engine.checkpoint import (
    MAGIC,
    CheckpointError,
    buffered_checkpoint_from_bytes,
    buffered_checkpoint_to_bytes,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
)
from fedcore.engine.records import RoundRecord, RoundStatus
from fedcore.engine.snapshot import EngineSnapshot


def _record(metrics: dict[str, float]) -> RoundRecord:
    return RoundRecord(round=1, status=RoundStatus.OK, clients_selected=3, results_received=3,
                       train_loss=0.5, loss=None, accuracy=None, eval_clients=0,
                       duration_s=2.0, metrics=metrics)


def _rewrite_header(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    start = len(MAGIC) + 8
    n = int.from_bytes(data[len(MAGIC):start], "little")
    header = json.loads(data[start:start + n])
    edit(header)
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(8, "little") + head + data[start + n:]


def _without_ledger(record: RoundRecord) -> bytes:
    data = checkpoint_to_bytes(EngineSnapshot(round=1, task_seq=1, params={"w": np.ones(2)},
                                              records=(record,)))
    return _rewrite_header(data, lambda header: header.pop("distributed_dp"))


def test_an_older_checkpoint_without_distributed_rounds_reads_with_an_empty_ledger() -> None:
    snap = checkpoint_from_bytes(_without_ledger(_record({"mean_staleness": 1.0})))
    assert snap.distributed_dp == ()
    assert (snap.round, snap.task_seq) == (1, 1)
    (record,) = snap.records
    assert record.status is RoundStatus.OK and record.metrics == {"mean_staleness": 1.0}
    np.testing.assert_array_equal(snap.params["w"], [1.0, 1.0])


@pytest.mark.parametrize("key", [EXACT_KEY, APPROX_KEY])
def test_an_older_checkpoint_reporting_distributed_epsilon_is_refused(key: str) -> None:
    with pytest.raises(CheckpointError, match="start a new run"):
        checkpoint_from_bytes(_without_ledger(_record({key: 3.0})))


def test_a_round_records_status_and_metrics_read_back_as_their_types() -> None:
    record = _record({"distributed_epsilon": 2.0})
    data = checkpoint_to_bytes(EngineSnapshot(round=1, task_seq=2, params={"w": np.ones(1)},
                                              records=(record,)))

    def integral_metric(header: dict[str, Any]) -> None:
        header["records"][0]["metrics"] = {"distributed_epsilon": 2}

    back = checkpoint_from_bytes(_rewrite_header(data, integral_metric))
    (read,) = back.records
    assert read.status is RoundStatus.OK
    assert read.metrics == {"distributed_epsilon": 2.0}
    assert isinstance(read.metrics["distributed_epsilon"], float)


def test_a_decoded_checkpoint_owns_its_tensors() -> None:
    rounds = bytearray(checkpoint_to_bytes(EngineSnapshot(
        round=0, task_seq=0, params={"w": np.arange(3.0)}, strategy_state={"m": np.ones(2)})))
    buffered = bytearray(buffered_checkpoint_to_bytes(BufferedSnapshot(
        version=0, params={"w": np.arange(3.0)}, strategy_state={"m": np.ones(2)})))
    snaps = [checkpoint_from_bytes(rounds), buffered_checkpoint_from_bytes(buffered)]
    rounds[:] = bytes(len(rounds))  # the file's buffer reused: the snapshots must not see it
    buffered[:] = bytes(len(buffered))
    for snap in snaps:
        np.testing.assert_array_equal(snap.params["w"], [0.0, 1.0, 2.0])
        np.testing.assert_array_equal(snap.strategy_state["m"], [1.0, 1.0])
    immutable = checkpoint_from_bytes(checkpoint_to_bytes(EngineSnapshot(
        round=0, task_seq=0, params={"w": np.arange(3.0)})))
    immutable.params["w"][0] = 5.0  # writeable even when read from immutable bytes
    assert immutable.params["w"][0] == 5.0
