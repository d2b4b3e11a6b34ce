"""FedBuff whose buffers are secure-aggregation groups (`fedcore.engine.buffered_secure`): groups
form from the clients that ask, each group's unmasked sum is one buffer with one staleness, and
dropouts, aborts, stale groups and bad messages do what the module says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.client import EvalResult, FitResult, FunctionalApp
from fedcore.client.handler import TaskHandler
from fedcore.engine.buffered import BufferedConfig, Outcome, staleness_weight
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.protocol.messages import (
    MASKED_TENSOR,
    ResultHeader,
    SecAggSetup,
    Task,
    TaskKind,
    TaskResult,
    Wait,
)
from fedcore.strategy import FedAvg

DIM = 6
SECURE = SecureAggregationConfig(max_clients=20, clip=1.0, weight_cap=10, phase_timeout_s=30.0)
QUANTUM = 1e-6  # 32-bit masked integers, clip 1: far finer than the deltas compared


def _engine(k: int = 3, concurrency: int = 6, updates: int = 5, **kwargs: object
            ) -> SecureBufferedEngine:
    config = BufferedConfig(buffer_size=k, concurrency=concurrency, num_updates=updates,
                            task_timeout_s=600.0, **kwargs)  # type: ignore[arg-type]
    return SecureBufferedEngine(config, FedAvg(), {"w": np.zeros(DIM, np.float32)}, SECURE)


def _handler(cid: str, delta: float, examples: int = 10) -> TaskHandler:
    def fit(params, config):  # type: ignore[no-untyped-def]
        return FitResult(params={k: v + np.float32(delta) for k, v in params.items()},
                         num_examples=examples)

    app = FunctionalApp(get_parameters=lambda: {"w": np.zeros(DIM, np.float32)}, fit=fit,
                        evaluate=lambda p, c: EvalResult(loss=0.0, num_examples=1))
    return TaskHandler(app, cid)


class Clients:
    """Deployed-client handlers answering every step the engine hands them."""

    def __init__(self, engine: SecureBufferedEngine, deltas: dict[str, float]) -> None:
        self.engine = engine
        self.handlers = {cid: _handler(cid, d) for cid, d in deltas.items()}
        self.outcomes: list[Outcome] = []

    def poll(self, cid: str, now: float = 0.0) -> Task | None:
        reply = self.engine.poll(cid, now=now)
        return reply if isinstance(reply, Task) else None

    def answer(self, cid: str, task: Task, now: float = 0.0) -> Outcome:
        params = None
        if task.kind is TaskKind.TRAIN:
            params = {k: v.copy() for k, v in self.engine.model_for(task.task_id).items()}
        outcome = self.engine.submit(self.handlers[cid].handle(task, params), now=now)
        self.outcomes.append(outcome)
        return outcome

    def sweep(self, cids: list[str], group: str, now: float = 0.0) -> int:
        """Every client in `cids` answers the step of `group` it has now (none once the group
        closed: a poll after that would join the next group); how many answered."""
        answered = 0
        for cid in cids:
            if not self.engine.is_out(group):
                break
            task = self.poll(cid, now)
            if task is not None:
                assert task.task_id == group
                self.answer(cid, task, now)
                answered += 1
        return answered

    def finish(self, cids: list[str], group: str, now: float = 0.0) -> None:
        """Run `group`'s protocol among `cids` until it closes or nobody has a step."""
        while self.sweep(cids, group, now):
            pass


def test_groups_form_from_the_clients_that_ask_and_slots_bound_them() -> None:
    engine = _engine(k=3, concurrency=6)
    replies = {f"c{i}": engine.poll(f"c{i}", now=0.0) for i in range(7)}
    kinds = {cid: type(r).__name__ for cid, r in replies.items()}
    assert kinds == {"c0": "Wait", "c1": "Wait", "c2": "Task", "c3": "Wait", "c4": "Wait",
                     "c5": "Task", "c6": "Wait"}
    assert "every slot is taken" in replies["c6"].reason  # type: ignore[union-attr]
    first, second = replies["c2"], replies["c5"]
    assert isinstance(first, Task) and isinstance(second, Task)
    assert first.task_id != second.task_id
    assert engine.members_of(first.task_id) == {"c0", "c1", "c2"}
    assert engine.members_of(second.task_id) == {"c3", "c4", "c5"}
    # the waiting members get the same group's training step (with its setup) when they ask
    again = engine.poll("c0", now=0.0)
    assert isinstance(again, Task) and again.task_id == first.task_id
    assert again.kind is TaskKind.TRAIN and isinstance(again.secagg, SecAggSetup)
    assert again.secagg.spec.num_clients == 3
    assert engine.outstanding == 6 and engine.open_groups == 2


def test_a_full_group_steps_on_its_weighted_mean_and_sees_only_masked_vectors() -> None:
    engine = _engine(k=3, updates=1)
    deltas = {"a": 0.1, "b": 0.2, "c": 0.6}
    clients = Clients(engine, deltas)
    masked: list[TaskResult] = []
    submit = engine.submit

    def spy(result: TaskResult, *, now: float) -> Outcome:
        masked.append(result)
        return submit(result, now=now)

    engine.submit = spy  # type: ignore[method-assign]
    for cid in deltas:
        engine.poll(cid, now=0.0)
    clients.finish(list(deltas), "sbuf-1")
    assert engine.version == 1 and engine.done
    np.testing.assert_allclose(engine.params["w"], np.full(DIM, 0.3), atol=QUANTUM)
    record = engine.records[0]
    assert record.staleness == (0, 0, 0)
    assert record.measurements["secagg_survivors"] == 3.0
    # the only payloads the coordinator received: one packed masked vector per member
    payloads = [r.tensors for r in masked if r.tensors]
    assert len(payloads) == 3 and all(set(p) == {MASKED_TENSOR} for p in payloads)


def test_a_second_group_finishing_later_is_weighted_by_its_staleness() -> None:
    engine = _engine(k=2, concurrency=4, updates=2)
    deltas = {"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.7}
    clients = Clients(engine, deltas)
    for cid in deltas:
        engine.poll(cid, now=0.0)
    clients.finish(["a", "b"], "sbuf-1")  # group 1 (a, b) finishes first: version 1
    assert engine.version == 1
    np.testing.assert_allclose(engine.params["w"], 0.2, atol=QUANTUM)
    clients.finish(["c", "d"], "sbuf-2")  # group 2 trained from version 0: staleness 1
    assert engine.version == 2
    expected = 0.2 + staleness_weight(1) * 0.6
    np.testing.assert_allclose(engine.params["w"], expected, atol=QUANTUM)
    assert engine.records[1].staleness == (1, 1)


def test_a_dropout_scales_the_step_by_survivors_over_k() -> None:
    engine = _engine(k=4, concurrency=4, updates=1)
    deltas = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    clients = Clients(engine, deltas)
    for cid in deltas:
        engine.poll(cid, now=0.0)
    task = clients.poll("d")
    assert task is not None
    assert engine.submit(clients.handlers["d"].decline(task, "battery low"), now=0.0) \
        is Outcome.DECLINED
    clients.finish(["a", "b", "c"], "sbuf-1")
    assert engine.version == 1 and engine.records[0].staleness == (0, 0, 0)
    np.testing.assert_allclose(engine.params["w"], 0.2 * 3 / 4, atol=QUANTUM)


def test_a_group_that_aborts_changes_nothing_and_frees_its_slots() -> None:
    engine = _engine(k=3, concurrency=3, updates=1)
    clients = Clients(engine, {"a": 0.1, "b": 0.2, "c": 0.3})
    for cid in "abc":
        engine.poll(cid, now=0.0)
    for cid in "bc":  # two of three leave: below the threshold (2 of 3)
        engine.release(cid)
    clients.finish(["a"], "sbuf-1")
    assert engine.version == 0 and engine.groups_failed == 1
    np.testing.assert_array_equal(engine.params["w"], np.zeros(DIM))
    assert engine.outstanding == 0 and engine.open_groups == 0
    assert "aborted" in engine.last_failure or "survivors" in engine.last_failure
    assert isinstance(engine.poll("d", now=1.0), Wait)  # the slots are free for a new group


def test_a_group_past_its_deadline_fails_without_a_step() -> None:
    engine = _engine(k=2, concurrency=2, updates=1)
    clients = Clients(engine, {"a": 0.1, "b": 0.2})
    engine.poll("a", now=0.0)
    task = engine.poll("b", now=0.0)
    assert isinstance(task, Task)
    clients.answer("b", task)  # b trains and advertises; a never answers
    engine.tick(700.0)  # past task_timeout_s (600)
    assert engine.version == 0 and engine.groups_failed == 1 and engine.open_groups == 0


def test_a_group_staler_than_max_staleness_is_refused_whole() -> None:
    engine = _engine(k=2, concurrency=4, updates=3, max_staleness=1)
    clients = Clients(engine, {"a": 0.1, "b": 0.1, "c": 0.5, "d": 0.5})
    for cid in "abcd":
        engine.poll(cid, now=0.0)
    clients.finish(["a", "b"], "sbuf-1")  # version 1
    for cid in "ab":  # a and b form a third group on version 1 and finish: version 2
        engine.poll(cid, now=0.0)
    clients.finish(["a", "b"], "sbuf-3")
    assert engine.version == 2
    before = engine.params["w"].copy()
    clients.finish(["c", "d"], "sbuf-2")  # started at version 0: staleness 2 > 1
    assert engine.version == 2 and engine.stale_refused == 2
    np.testing.assert_array_equal(engine.params["w"], before)
    assert Outcome.STALE in clients.outcomes


def test_messages_from_outsiders_late_members_and_wrong_layouts_change_nothing() -> None:
    engine = _engine(k=2, concurrency=2, updates=1)
    clients = Clients(engine, {"a": 0.1, "b": 0.2, "x": 0.9})
    engine.poll("a", now=0.0)
    task = engine.poll("b", now=0.0)
    assert isinstance(task, Task)
    result = clients.handlers["b"].handle(task, dict(engine.model_for(task.task_id)))
    stranger = TaskResult(header=result.header.__class__(
        **{**{f: getattr(result.header, f) for f in result.header.__dataclass_fields__},
           "client_id": "x"}), tensors=result.tensors)
    with pytest.raises(EngineError) as err:
        engine.submit(stranger, now=0.0)
    assert err.value.reason is Reason.NOT_ASSIGNED
    with pytest.raises(EngineError) as err:
        engine.version_of("b", "sbuf-999")
    assert err.value.reason is Reason.LATE
    activity = engine.activity
    engine.submit(result, now=0.0)  # b's keys: accepted once
    assert engine.activity == activity or engine.open_groups == 1
    with pytest.raises(EngineError):  # the same keys again: refused, nothing moves
        engine.submit(result, now=0.0)
    assert engine.version == 0 and engine.open_groups == 1


def test_leaving_while_a_group_forms_gives_the_slot_back() -> None:
    engine = _engine(k=3, concurrency=3)
    engine.poll("a", now=0.0)
    engine.poll("b", now=0.0)
    assert engine.forming == ("a", "b")
    engine.release("a")
    assert engine.forming == ("b",) and engine.outstanding == 1
    assert isinstance(engine.poll("c", now=0.0), Wait)
    assert isinstance(engine.poll("d", now=0.0), Task)  # b, c, d: the group opens
    assert engine.members_of("sbuf-1") == {"b", "c", "d"}


@pytest.mark.parametrize("k, secure, why", [
    (1, SECURE, "buffer_size >= 2"),
    (3, SecureAggregationConfig(max_clients=2), "max_clients"),
    (3, SecureAggregationConfig(max_clients=20, distributed_dp=DistributedDPConfig(
        noise_multiplier=1.0, clip_norm=1.0)), "distributed DP"),
])
def test_unfit_settings_are_refused(k: int, secure: SecureAggregationConfig, why: str) -> None:
    config = BufferedConfig(buffer_size=k, concurrency=max(k, 3), num_updates=1)
    with pytest.raises(ValueError, match=why):
        SecureBufferedEngine(config, FedAvg(), {"w": np.zeros(2, np.float32)}, secure)


def test_staleness_weight_of_a_group_is_one_per_survivor() -> None:
    assert math.isclose(staleness_weight(3), 0.5)


def test_a_secure_run_evaluates_each_version_with_plain_evaluation_tasks() -> None:
    """Evaluation results are metrics, not updates: they go to the engine as in plain runs,
    from clients outside any group, and the run ends after the last version's evaluation."""
    config = BufferedConfig(buffer_size=2, concurrency=2, num_updates=1, task_timeout_s=600.0,
                            eval_every=1, eval_clients=1)
    engine = SecureBufferedEngine(config, FedAvg(), {"w": np.zeros(DIM, np.float32)}, SECURE)
    clients = Clients(engine, {"a": 0.1, "b": 0.3})
    engine.poll("a", now=0.0)
    engine.poll("b", now=0.0)
    clients.finish(["a", "b"], "sbuf-1")
    assert engine.version == 1 and not engine.done and engine.settled_records() == []
    task = engine.poll("e", now=1.0)
    assert isinstance(task, Task) and task.kind is TaskKind.EVALUATE and task.round == 1
    assert engine.version_of("e", task.task_id) == 1 and engine.is_out(task.task_id)
    assert "e" in engine.clients_out()
    evaluation = TaskResult(header=ResultHeader(client_id="e", task_id=task.task_id,
                                                num_examples=5,
                                                metrics={"loss": 0.5, "accuracy": 0.6}))
    assert engine.submit(evaluation, now=2.0) is Outcome.EVALUATED
    assert engine.done and engine.records[0].evaluation["accuracy"] == pytest.approx(0.6)
