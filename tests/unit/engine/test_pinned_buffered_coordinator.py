"""The gRPC face of a FedBuff run (`BufferedCoordinator`): who may join, what a server step
looks like as a round record (its duration since the step before), a permanent decline
excluding its client, and the queries the service reads."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferRecord
from fedcore.engine.buffered_coordinator import BufferedCoordinator, as_round_record
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.engine import Phase
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.records import RoundStatus
from fedcore.protocol.messages import PROTOCOL_VERSION, ResultHeader, Task, TaskResult
from fedcore.secagg.roster import Roster, public_key
from fedcore.strategy import FedAvg


def _facade(k: int = 1, concurrency: int = 2, updates: int = 3, **config: object
            ) -> tuple[BufferedCoordinator, BufferedEngine]:
    engine = BufferedEngine(BufferedConfig(buffer_size=k, concurrency=concurrency,
                                           num_updates=updates, task_timeout_s=50.0),
                            FedAvg(), {"w": np.zeros(1, np.float64)})
    return BufferedCoordinator(engine, EngineConfig(num_rounds=1, **config)), engine  # type: ignore[arg-type]


def _joined(facade: BufferedCoordinator, cid: str, now: float = 0.0) -> None:
    facade.authenticate(cid, facade.join(cid, now=now), now=now)


def _result(task: Task, cid: str, delta: float) -> TaskResult:
    return TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id, num_examples=1),
                      tensors={"w": np.array([delta])})


def test_another_protocol_version_is_refused_and_nobody_joins() -> None:
    facade, _ = _facade()
    for version in (PROTOCOL_VERSION + 1, PROTOCOL_VERSION - 1):
        with pytest.raises(EngineError) as err:
            facade.join("a", now=0.0, protocol_version=version)
        assert err.value.reason is Reason.UNSUPPORTED
    assert facade.available_clients(0.0) == []
    assert isinstance(facade.join("a", now=0.0, protocol_version=PROTOCOL_VERSION), bytes)
    assert facade.available_clients(0.0) == ["a"]


def test_only_the_roster_may_join_a_signed_run() -> None:
    roster = Roster({"on": public_key(Ed25519PrivateKey.generate())})
    secure = SecureAggregationConfig(max_clients=10, clip=1.0, weight_cap=10, roster=roster)
    facade, _ = _facade(secagg=secure)
    with pytest.raises(EngineError) as err:
        facade.join("off", now=0.0)
    assert err.value.reason is Reason.NOT_ALLOWED and facade.available_clients(0.0) == []
    facade.join("on", now=0.0)
    assert facade.available_clients(0.0) == ["on"]


def test_a_server_step_as_a_round_record() -> None:
    record = BufferRecord(version=4, at_s=10.0, staleness=(0, 3, 1),
                          measurements={"mean_staleness": 4 / 3},
                          evaluation={"loss": 0.5, "accuracy": 0.75}, eval_clients=2)
    rr = as_round_record(record, previous_at=4.0)
    assert (rr.round, rr.status, rr.clients_selected, rr.results_received) == (
        4, RoundStatus.OK, 3, 3)
    assert rr.duration_s == 6.0 and rr.loss == 0.5 and rr.accuracy == 0.75
    assert rr.eval_clients == 2 and rr.train_loss is None
    assert rr.metrics["max_staleness"] == 3.0 and rr.metrics["mean_staleness"] == 4 / 3
    assert as_round_record(record, previous_at=12.0).duration_s == 0.0  # never negative
    bare = as_round_record(BufferRecord(version=1, at_s=1.0, staleness=(0,)), 0.0)
    assert bare.loss is None and bare.accuracy is None and bare.eval_clients == 0


def test_records_are_new_once_and_durations_run_from_step_to_step() -> None:
    facade, _ = _facade()
    _joined(facade, "a")
    for now in (2.0, 5.0):
        task = facade.poll("a", now=now - 1.0)
        assert isinstance(task, Task)
        facade.submit(_result(task, "a", 1.0), now=now)
    new = facade.pop_new_records()
    assert [(r.round, r.duration_s) for r in new] == [(1, 2.0), (2, 3.0)]
    assert facade.pop_new_records() == [] and len(facade.records) == 2
    assert facade.round_number == 2
    np.testing.assert_array_equal(facade.params["w"], [2.0])


def test_a_restored_engines_steps_are_history_not_new() -> None:
    facade, engine = _facade()
    _joined(facade, "a")
    task = facade.poll("a", now=0.0)
    assert isinstance(task, Task)
    facade.submit(_result(task, "a", 1.0), now=1.0)
    again = BufferedCoordinator(BufferedEngine.restore(engine.config, FedAvg(),
                                                       engine.snapshot()), facade.config)
    assert again.pop_new_records() == [] and [r.round for r in again.records] == [1]
    assert again.snapshot().version == 1


def test_a_permanent_decline_excludes_the_client_a_plain_one_does_not() -> None:
    facade, engine = _facade()
    for cid in ("a", "b"):
        _joined(facade, cid)
    for cid, permanent in (("a", True), ("b", False)):
        task = facade.poll(cid, now=0.0)
        assert isinstance(task, Task)
        facade.submit(TaskResult(header=ResultHeader(
            client_id=cid, task_id=task.task_id, num_examples=0, declined_reason="budget",
            permanent=permanent)), now=1.0)
    assert facade.available_clients(1.0) == ["b"] and engine.declined == 2


def test_queries_follow_the_engine() -> None:
    facade, engine = _facade(updates=1)
    assert facade.open_task_id is None and facade.phase is Phase.TRAINING
    assert facade.retry_after("a", now=0.0) == facade.config.retry_after_s
    _joined(facade, "a")
    task = facade.poll("a", now=0.0)
    assert isinstance(task, Task)
    assert facade.is_task_open(task.task_id) and facade.next_deadline() == 50.0
    assert engine.available == 1  # the poll told the engine who is connected
    facade.tick(50.0)  # expired at its deadline
    assert not facade.is_task_open(task.task_id) and facade.open_clients() == []
    with pytest.raises(EngineError) as late:
        facade.submit(_result(task, "a", 1.0), now=51.0)
    assert late.value.reason is Reason.LATE and engine.version == 0
