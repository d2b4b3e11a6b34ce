"""FedBuff's engine and its evaluations, pinned at their boundaries: each config check at the
last value refused and the first accepted, a snapshot's checks, restore, deadlines (a task
expires at its deadline, not after), the staleness bound (max_staleness accepted, one more
refused), the time a re-handed task has left, and `Evaluations` counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.engine.buffered import (
    BufferedConfig,
    BufferedEngine,
    BufferedSnapshot,
    BufferRecord,
    Outcome,
    staleness_weight,
)
from fedcore.engine.buffered_eval import Evaluations
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.messages import ResultHeader, Task, TaskKind, TaskResult, Wait
from fedcore.strategy import FedAvg
from fedcore.strategy.server_opt import Rule, ServerOptimizer


def _engine(k: int = 2, concurrency: int = 3, updates: int = 5, strategy: object = None,
            **kwargs: object) -> BufferedEngine:
    config = BufferedConfig(buffer_size=k, concurrency=concurrency, num_updates=updates,
                            **kwargs)  # type: ignore[arg-type]
    return BufferedEngine(config, strategy or FedAvg(), {"w": np.zeros(1, np.float64)})  # type: ignore[arg-type]


def _task(engine: BufferedEngine, cid: str, now: float = 0.0) -> Task:
    reply = engine.poll(cid, now=now)
    assert isinstance(reply, Task), reply
    return reply


def _result(task: Task, cid: str, delta: float, examples: int = 5) -> TaskResult:
    return TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id,
                                          num_examples=examples),
                      tensors={"w": np.array([delta])})


def _metrics(task: Task, cid: str, loss: float, examples: int = 1) -> TaskResult:
    return TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id,
                                          num_examples=examples, metrics={"loss": loss}))


# ------------------------------------------------------------------ config
BASE = {"buffer_size": 2, "concurrency": 2, "num_updates": 1}


@pytest.mark.parametrize(("name", "refused", "accepted"), [
    ("buffer_size", 0, 1),
    ("num_updates", 0, 1),
    ("eval_every", -1, 0),
    ("eval_clients", -1, 0),
    ("task_timeout_s", 0.0, 1e-9),
    ("task_timeout_s", math.inf, 1e9),
    ("task_timeout_s", math.nan, 600.0),
    ("max_staleness", -1, 0),
    ("staleness_exponent", -1e-9, 0.0),
    ("staleness_exponent", math.inf, 2.0),
    ("staleness_exponent", math.nan, 0.5),
    ("retry_after_s", 0.0, 1e-9),
    ("retry_after_s", math.nan, 1.0),
])
def test_each_config_check_refuses_the_last_bad_value_and_accepts_the_first_good(
        name: str, refused: object, accepted: object) -> None:
    with pytest.raises(ValueError):
        BufferedConfig(**{**BASE, name: refused})  # type: ignore[arg-type]
    assert getattr(BufferedConfig(**{**BASE, name: accepted}), name) == accepted  # type: ignore[arg-type]


def test_concurrency_may_equal_the_buffer_size_but_not_fall_below_it() -> None:
    assert BufferedConfig(buffer_size=3, concurrency=3, num_updates=1).concurrency == 3
    with pytest.raises(ValueError):
        BufferedConfig(buffer_size=3, concurrency=2, num_updates=1)
    with pytest.raises(ValueError):
        BufferedConfig(buffer_size=1, concurrency=0, num_updates=1)


def test_the_config_defaults() -> None:
    c = BufferedConfig()
    assert (c.buffer_size, c.concurrency, c.num_updates, c.task_timeout_s, c.max_staleness,
            c.staleness_exponent, c.retry_after_s, c.eval_every, c.eval_clients) == (
        10, 20, 10, 600.0, 0, 0.5, 1.0, 0, 10)


def test_staleness_weight_of_zero_is_one_and_negative_is_refused() -> None:
    assert staleness_weight(0, exponent=3.0) == 1.0
    assert staleness_weight(1) == pytest.approx(1 / math.sqrt(2))
    assert staleness_weight(2, exponent=2.0) == pytest.approx(1 / 9)
    with pytest.raises(ValueError):
        staleness_weight(-1, exponent=0.0)


# ------------------------------------------------------------------ snapshots and restore
def _record(version: int) -> BufferRecord:
    return BufferRecord(version=version, at_s=float(version), staleness=(0,))


@pytest.mark.parametrize("field", ["version", "tasks_issued", "stale_refused", "expired",
                                   "declined"])
def test_a_snapshot_refuses_a_negative_counter(field: str) -> None:
    with pytest.raises(ValueError):
        BufferedSnapshot(**{"version": 0, "params": {"w": np.zeros(1)}, field: -1})  # type: ignore[arg-type]
    zero = BufferedSnapshot(**{"version": 0, "params": {"w": np.zeros(1)}, field: 0})  # type: ignore[arg-type]
    assert getattr(zero, field) == 0


def test_a_snapshot_needs_a_model_and_one_record_per_version() -> None:
    with pytest.raises(ValueError):
        BufferedSnapshot(version=0, params={})
    with pytest.raises(ValueError):
        BufferedSnapshot(version=2, params={"w": np.zeros(1)}, records=(_record(1),))
    with pytest.raises(ValueError):
        BufferedSnapshot(version=0, params={"w": np.zeros(1)}, records=(_record(1),))
    ok = BufferedSnapshot(version=1, params={"w": np.zeros(1)}, records=(_record(1),))
    assert ok.version == 1


def test_an_engine_needs_initial_parameters() -> None:
    with pytest.raises(ValueError):
        BufferedEngine(BufferedConfig(**BASE), FedAvg(), {})  # type: ignore[arg-type]


def test_restore_goes_on_from_the_snapshot_up_to_num_updates() -> None:
    engine = _engine(k=1, concurrency=2, updates=2)
    t = _task(engine, "a")
    engine.submit(_result(t, "a", 2.0), now=1.0)
    snap = engine.snapshot()
    assert (snap.version, snap.tasks_issued) == (1, 1)
    config = BufferedConfig(buffer_size=1, concurrency=2, num_updates=1)  # == version: allowed
    restored = BufferedEngine.restore(config, FedAvg(), snap)
    assert restored.version == 1 and restored.trained and restored.versions_held() == {1}
    np.testing.assert_array_equal(restored.params["w"], [2.0])
    with pytest.raises(ValueError):
        BufferedEngine.restore(config, FedAvg(), BufferedSnapshot(
            version=2, params={"w": np.zeros(1)}, records=(_record(1), _record(2))))
    # a strategy state only a stateful strategy can take back
    stateful = BufferedSnapshot(version=0, params={"w": np.zeros(1)},
                                strategy_state={"m/w": np.ones(1)})
    with pytest.raises(ValueError):
        BufferedEngine.restore(BufferedConfig(**BASE), FedAvg(), stateful)
    going_on = BufferedEngine.restore(BufferedConfig(**BASE), FedAvg(), BufferedSnapshot(
        version=0, params={"w": np.zeros(1)}, tasks_issued=7, expired=2, declined=3,
        stale_refused=4))
    assert (going_on.expired, going_on.declined, going_on.stale_refused) == (2, 3, 4)
    assert _task(going_on, "z").task_id == "buf-8"  # task ids go on


def test_a_server_optimizers_state_survives_a_restore() -> None:
    engine = _engine(k=1, concurrency=1, updates=3, strategy=ServerOptimizer(Rule.MOMENTUM, eta=1.0))
    engine.submit(_result(_task(engine, "a"), "a", 1.0), now=1.0)
    snap = engine.snapshot()
    assert snap.strategy_state  # the momentum
    again = BufferedEngine.restore(engine.config, ServerOptimizer(Rule.MOMENTUM, eta=1.0), snap)
    engine.submit(_result(_task(engine, "a", now=2.0), "a", 1.0), now=3.0)
    again.submit(_result(_task(again, "a", now=2.0), "a", 1.0), now=3.0)
    np.testing.assert_allclose(again.params["w"], engine.params["w"])


# ------------------------------------------------------------------ queries
def test_task_of_versions_held_and_next_deadline() -> None:
    engine = _engine(k=1, concurrency=2, updates=3, task_timeout_s=10.0)
    first = _task(engine, "a", now=1.0)
    assert engine.task_of(first.task_id) == ("a", 0)
    assert engine.task_of("nope") is None
    assert engine.next_deadline() == 11.0
    second = _task(engine, "b", now=2.0)
    engine.submit(_result(second, "b", 1.0), now=3.0)  # version 1; a still trains from 0
    assert engine.versions_held() == {0, 1}
    assert engine.next_deadline() == 11.0
    engine.submit(_result(first, "a", 1.0), now=4.0)
    assert engine.versions_held() == {2} and engine.next_deadline() is None


def test_a_re_handed_task_tells_the_time_left_to_its_deadline() -> None:
    engine = _engine(k=2, concurrency=2, task_timeout_s=100.0)
    t = _task(engine, "a", now=10.0)
    assert t.time_left_s == 100.0 and t.round == 1 and t.kind is TaskKind.TRAIN
    again = _task(engine, "a", now=70.0)
    assert again.task_id == t.task_id and again.time_left_s == pytest.approx(40.0)


def test_an_evaluation_task_tells_the_time_left_to_its_deadline() -> None:
    engine = _engine(k=1, concurrency=1, updates=2, eval_every=1, eval_clients=1,
                     task_timeout_s=100.0)
    engine.submit(_result(_task(engine, "a"), "a", 1.0), now=5.0)
    ev = _task(engine, "e", now=10.0)
    assert ev.kind is TaskKind.EVALUATE and ev.round == 1 and ev.time_left_s == 100.0
    again = _task(engine, "e", now=30.0)
    assert again.task_id == ev.task_id and again.time_left_s == pytest.approx(80.0)


def test_a_task_expires_at_its_deadline_not_before() -> None:
    engine = _engine(k=1, concurrency=1, task_timeout_s=10.0)
    t = _task(engine, "a", now=0.0)
    engine.tick(9.999)
    assert engine.is_out(t.task_id) and engine.expired == 0
    engine.tick(10.0)
    assert not engine.is_out(t.task_id) and engine.expired == 1 and engine.outstanding == 0


# ------------------------------------------------------------------ submit
def test_max_staleness_itself_is_accepted_and_one_more_refused() -> None:
    engine = _engine(k=1, concurrency=3, updates=5, max_staleness=1)
    one_behind, two_behind = _task(engine, "x"), _task(engine, "y")
    engine.submit(_result(_task(engine, "n"), "n", 0.0), now=1.0)  # version 1
    assert engine.submit(_result(one_behind, "x", 4.0), now=2.0) is Outcome.APPLIED
    assert engine.records[-1].staleness == (1,)
    np.testing.assert_allclose(engine.params["w"], [4.0 / math.sqrt(2)])
    assert engine.submit(_result(two_behind, "y", 4.0), now=3.0) is Outcome.STALE
    assert engine.stale_refused == 1 and engine.version == 2


def test_no_max_staleness_accepts_any_age() -> None:
    engine = _engine(k=1, concurrency=2, updates=5, staleness_exponent=1.0)
    old = _task(engine, "old")
    for i in range(3):
        engine.submit(_result(_task(engine, f"n{i}"), f"n{i}", 0.0), now=1.0)
    assert engine.submit(_result(old, "old", 8.0), now=2.0) is Outcome.APPLIED
    np.testing.assert_allclose(engine.params["w"], [2.0])  # s(3) = 1/4 at exponent 1
    assert engine.records[-1].measurements["staleness_weight"] == pytest.approx(0.25)
    assert engine.records[-1].measurements["mean_staleness"] == 3.0


def test_a_training_result_without_examples_is_refused_and_changes_nothing() -> None:
    engine = _engine(k=1, concurrency=1)
    t = _task(engine, "a")
    with pytest.raises(EngineError) as err:
        engine.submit(_result(t, "a", 1.0, examples=0), now=1.0)
    assert err.value.reason is Reason.INVALID
    assert engine.is_out(t.task_id) and engine.version == 0 and engine.buffered == 0
    assert engine.submit(_result(t, "a", 1.0, examples=1), now=1.0) is Outcome.APPLIED


def test_an_unknown_task_before_the_end_is_refused() -> None:
    engine = _engine(k=1, concurrency=1, updates=1)
    ghost = TaskResult(header=ResultHeader(client_id="a", task_id="buf-99", num_examples=1),
                       tensors={"w": np.array([1.0])})
    with pytest.raises(EngineError) as err:
        engine.submit(ghost, now=0.0)
    assert err.value.reason is Reason.NOT_ASSIGNED and engine.version == 0
    with pytest.raises(EngineError) as late:
        engine.version_of("a", "buf-99")
    assert late.value.reason is Reason.LATE
    with pytest.raises(EngineError) as model:
        engine.model_for("buf-99")
    assert model.value.reason is Reason.NOT_ASSIGNED


def test_the_buffer_steps_on_the_sum_over_k_not_the_weighted_mean() -> None:
    # K = 2: a fresh +1 and a result 3 versions old (+4, s = 1/2): Δ = (1 + 2) / 2
    engine = _engine(k=2, concurrency=4, updates=10)
    old = _task(engine, "old")
    for i in range(3):  # three steps of K = 2 zeros
        engine.submit(_result(_task(engine, f"a{i}"), f"a{i}", 0.0), now=1.0)
        engine.submit(_result(_task(engine, f"b{i}"), f"b{i}", 0.0), now=1.0)
    assert engine.version == 3
    engine.submit(_result(old, "old", 4.0), now=2.0)
    engine.submit(_result(_task(engine, "new"), "new", 1.0), now=2.0)
    np.testing.assert_allclose(engine.params["w"], [1.5])
    assert engine.records[-1].staleness == (3, 0)
    assert engine.records[-1].measurements["staleness_weight"] == pytest.approx(1.5)


def test_wait_while_the_last_version_is_evaluated_then_done() -> None:
    engine = _engine(k=1, concurrency=2, updates=1, eval_every=1, eval_clients=1,
                     retry_after_s=7.0)
    other = _task(engine, "b")
    engine.submit(_result(_task(engine, "a"), "a", 1.0), now=1.0)
    assert engine.trained and not engine.done and not engine.is_out(other.task_id)
    ev = _task(engine, "e", now=2.0)
    wait = engine.poll("f", now=2.0)
    assert isinstance(wait, Wait) and wait.retry_after_s == 7.0
    assert engine.settled_records() == []
    assert engine.submit(_metrics(ev, "e", 0.25, examples=4), now=3.0) is Outcome.EVALUATED
    assert engine.done
    [record] = engine.settled_records()
    assert record.evaluation == {"loss": 0.25} and record.eval_clients == 1


def test_an_evaluation_result_with_tensors_or_no_examples_is_refused() -> None:
    engine = _engine(k=1, concurrency=1, updates=2, eval_every=1, eval_clients=1)
    engine.submit(_result(_task(engine, "a"), "a", 1.0), now=1.0)
    ev = _task(engine, "e", now=2.0)
    for bad in (_result(ev, "e", 1.0), _metrics(ev, "e", 0.5, examples=0)):
        with pytest.raises(EngineError) as err:
            engine.submit(bad, now=2.0)
        assert err.value.reason is Reason.INVALID
    assert engine.is_out(ev.task_id) and engine.wants_evaluators == 0
    assert engine.submit(_metrics(ev, "e", 0.5), now=2.0) is Outcome.EVALUATED


# ------------------------------------------------------------------ Evaluations
def test_evaluations_are_due_every_n_versions_and_at_the_last() -> None:
    ev = Evaluations(every=3, clients=2, timeout_s=10.0)
    assert [v for v in range(1, 8) if ev.due(v, last=7)] == [3, 6, 7]
    assert not Evaluations(every=0, clients=2, timeout_s=1.0).due(7, last=7)
    assert not Evaluations(every=1, clients=0, timeout_s=1.0).due(7, last=7)
    assert Evaluations(every=1, clients=1, timeout_s=1.0).due(1, last=7)


def test_an_evaluation_wants_at_most_the_clients_connected_and_at_least_one() -> None:
    ev = Evaluations(every=1, clients=3, timeout_s=10.0)
    ev.open(1, now=0.0, available=2)
    assert ev.wanted() == 2
    ev.open(2, now=0.0, available=0)
    assert ev.wanted() == 3  # 2 + max(1, 0)
    ev.open(3, now=0.0)
    assert ev.wanted() == 6
    assert ev.next_deadline() == 10.0 and ev.pending == frozenset({1, 2, 3})


def test_evaluation_places_are_handed_once_per_client_and_given_back() -> None:
    ev = Evaluations(every=1, clients=2, timeout_s=10.0)
    ev.open(1, now=0.0)
    assert ev.take("a") == 1 and ev.take("a") is None  # at most once per version
    assert ev.take("b") == 1 and ev.take("c") is None and ev.wanted() == 0
    ev.give_back(1)
    assert ev.wanted() == 1 and ev.take("c") == 1
    ev.give_back(99)  # not open: nothing happens
    assert ev.wanted() == 0


def test_an_evaluation_closes_when_complete_or_at_its_deadline() -> None:
    ev = Evaluations(every=1, clients=2, timeout_s=10.0)
    ev.open(1, now=0.0)
    ev.open(2, now=5.0)
    ev.take("a"), ev.take("b")
    ev.fold(1, {"loss": 1.0}, 1)
    assert ev.close_due(9.0) == []
    ev.fold(1, {"loss": 4.0}, 3)
    [closed] = ev.close_due(9.0)
    assert (closed.version, closed.clients) == (1, 2)
    assert closed.metrics["loss"] == pytest.approx((1.0 + 12.0) / 4)
    ev.fold(99, {"loss": 1.0}, 1)  # not open: ignored
    assert ev.close_due(14.999) == []
    [late] = ev.close_due(15.0)  # the deadline itself closes it, with nothing received
    assert (late.version, late.clients) == (2, 0) and ev.pending == frozenset()
    ev.open(3, now=0.0)
    ev.clear()
    assert ev.pending == frozenset() and ev.next_deadline() is None
