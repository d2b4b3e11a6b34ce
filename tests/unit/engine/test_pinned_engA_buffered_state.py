"""A buffered run's bookkeeping, pinned: a snapshot's counters start at zero, an evaluation's
places still wanted shrink by each task handed out and each result received (and grow back when
one is given back), an older checkpoint whose records lack `eval_clients` reads as none, a
checkpoint of the other kind of run is refused with the change that fixes it, and a buffered
plan without a model says where to give one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferedSnapshot, BufferRecord
from fedcore.engine.buffered_eval import Evaluations
from fedcore.engine.checkpoint import (
    MAGIC,
    CheckpointError,
    buffered_checkpoint_from_bytes,
    buffered_checkpoint_to_bytes,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
)
from fedcore.engine.plan import RunPlan, build_buffered
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult
from fedcore.strategy import FedAvg

from .conftest import engine_config


def test_a_snapshots_counters_default_to_zero_and_a_restore_keeps_them() -> None:
    snap = BufferedSnapshot(version=0, params={"w": np.zeros(1)})
    assert (snap.tasks_issued, snap.stale_refused, snap.expired, snap.declined) == (0, 0, 0, 0)
    assert snap.records == () and snap.strategy_state == {}
    config = BufferedConfig(buffer_size=1, concurrency=1, num_updates=1)
    engine = BufferedEngine.restore(config, FedAvg(), snap)
    assert (engine.stale_refused, engine.expired, engine.declined) == (0, 0, 0)
    assert engine.snapshot().tasks_issued == 0


def test_an_evaluations_places_wanted_count_tasks_out_and_results_in() -> None:
    evals = Evaluations(every=1, clients=3, timeout_s=10.0)
    evals.open(1, now=100.0)
    assert evals.wanted() == 3
    assert evals.take("a") == 1
    assert evals.wanted() == 2  # one handed out
    assert evals.take("b") == 1
    assert evals.wanted() == 1
    evals.fold(1, {"loss": 1.0}, 1)
    assert evals.wanted() == 1  # b's place moved from out to received
    evals.give_back(1)  # a's task expired: its place is wanted again
    assert evals.wanted() == 2
    assert evals.take("c") == 1 and evals.take("d") == 1
    assert evals.wanted() == 0 and evals.take("e") is None
    evals.open(2, now=100.0)  # a second open evaluation adds its own places
    assert evals.wanted() == 3


def test_an_engines_evaluators_wanted_drop_as_evaluation_tasks_go_out() -> None:
    config = BufferedConfig(buffer_size=1, concurrency=2, num_updates=2, eval_every=1,
                            eval_clients=3)
    engine = BufferedEngine(config, FedAvg(), {"w": np.zeros(1)})
    assert engine.wants_evaluators == 0
    task = engine.poll("a", now=50.0)
    assert isinstance(task, Task)
    engine.submit(TaskResult(header=ResultHeader(client_id="a", task_id=task.task_id,
                                                 num_examples=1), tensors={"w": np.ones(1)}),
                  now=51.0)
    assert engine.version == 1 and engine.wants_evaluators == 3
    first = engine.poll("b", now=52.0)
    assert isinstance(first, Task) and first.kind is TaskKind.EVALUATE
    assert engine.wants_evaluators == 2


def _rewrite_header(data: bytes, edit: object) -> bytes:
    """`data` with its JSON header passed through `edit` (the payload kept as it was)."""
    start = len(MAGIC) + 8
    n = int.from_bytes(data[len(MAGIC):start], "little")
    header = json.loads(data[start:start + n])
    edit(header)  # type: ignore[operator]
    head = json.dumps(header).encode()
    return MAGIC + len(head).to_bytes(8, "little") + head + data[start + n:]


def test_a_buffered_checkpoint_written_before_evaluations_reads_as_unevaluated() -> None:
    record = BufferRecord(version=1, at_s=5.0, staleness=(0, 1),
                          measurements={"mean_staleness": 0.5},
                          evaluation={"loss": 0.25}, eval_clients=4)
    snap = BufferedSnapshot(version=1, params={"w": np.zeros(2)}, records=(record,))
    data = buffered_checkpoint_to_bytes(snap)
    assert buffered_checkpoint_from_bytes(data).records == (record,)

    def drop_evaluations(header: dict[str, object]) -> None:
        for row in header["records"]:  # type: ignore[attr-defined]
            del row["evaluation"], row["eval_clients"]

    old = buffered_checkpoint_from_bytes(_rewrite_header(data, drop_evaluations))
    (read,) = old.records
    assert read.evaluation == {} and read.eval_clients == 0
    assert (read.version, read.at_s, read.staleness) == (1, 5.0, (0, 1))


def test_a_checkpoint_of_the_other_kind_of_run_names_the_table_to_change() -> None:
    buffered = buffered_checkpoint_to_bytes(BufferedSnapshot(version=0, params={"w": np.zeros(1)}))
    rounds = checkpoint_to_bytes(EngineSnapshot(round=0, task_seq=0, params={"w": np.zeros(1)}))
    with pytest.raises(CheckpointError) as as_rounds:
        checkpoint_from_bytes(buffered)
    assert "add [buffered]" in str(as_rounds.value)
    with pytest.raises(CheckpointError) as as_buffered:
        buffered_checkpoint_from_bytes(rounds)
    assert "remove [buffered]" in str(as_buffered.value)


def test_a_buffered_plan_without_a_model_says_where_to_give_one() -> None:
    plan = RunPlan(engine=engine_config(), strategy=FedAvg(),
                   buffered=BufferedConfig(buffer_size=1, concurrency=1, num_updates=1))
    with pytest.raises(ValueError, match="initial_model"):
        build_buffered(plan)
