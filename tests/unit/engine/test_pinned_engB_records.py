"""Round records and the open task's bookkeeping, driven directly on a clock that does not start
at 0: a record's duration is its close minus its open, counters start at zero, ε is reported per
mechanism present, extra metrics never override a field; a task is settled at (not after) its
deadline or once nobody is outstanding, says why it closed, and succeeds at exactly
`min_results`; selection takes every available client but never more."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from fedcore.engine.collect import PlainCollector
from fedcore.engine.model import RoundModel
from fedcore.engine.records import PrivacyMechanism, RecordDraft, RoundRecord, RoundStatus
from fedcore.engine.selection import round_rng, select_clients
from fedcore.engine.task_round import LEFT, TaskRound
from fedcore.protocol.messages import TaskKind, TrainConfig
from fedcore.strategy import FedAvg

T0 = 3_600.0


def test_a_record_lasts_from_its_open_to_its_close() -> None:
    record = RecordDraft(round=4, opened_at=T0).finish(T0 + 2.5)
    assert record.duration_s == pytest.approx(2.5)
    assert (record.round, record.status, record.reason) == (4, RoundStatus.OK, "")
    assert (record.clients_selected, record.results_received, record.eval_clients) == (0, 0, 0)
    assert (record.train_loss, record.loss, record.accuracy) == (None, None, None)


def test_an_evaluation_moves_loss_and_accuracy_into_fields() -> None:
    draft = RecordDraft(round=1, opened_at=T0)
    draft.metrics["epsilon"] = 1.5
    draft.evaluated({"loss": 0.3, "accuracy": 0.9, "f1": 0.8, "odd": math.inf}, 7)
    record = draft.finish(T0 + 1.0)
    assert (record.loss, record.accuracy, record.eval_clients) == (0.3, 0.9, 7)
    assert record.metrics == {"epsilon": 1.5, "f1": 0.8}  # non-finite extras dropped


def _record(metrics: dict[str, float]) -> RoundRecord:
    return RoundRecord(round=1, status=RoundStatus.OK, clients_selected=2, results_received=2,
                       train_loss=0.5, loss=None, accuracy=None, eval_clients=0, duration_s=1.0,
                       metrics=metrics)


def test_epsilons_are_the_mechanisms_the_round_reports() -> None:
    assert _record({}).epsilons() == {}
    record = _record({"user_epsilon": 2.0, "distributed_epsilon": 3.0, "loss_x": 1.0})
    assert record.epsilons() == {PrivacyMechanism.USER: 2.0, PrivacyMechanism.DISTRIBUTED: 3.0}


def test_a_flat_row_keeps_its_fields_over_extra_metrics_of_the_same_name() -> None:
    row = _record({"round": 99.0, "train_loss": 7.0, "upload_bytes": 64.0}).to_dict()
    assert row["round"] == 1 and row["train_loss"] == 0.5 and row["upload_bytes"] == 64.0
    assert row["status"] == "ok" and "metrics" not in row


class _Collector(PlainCollector):
    def __init__(self, target: int) -> None:
        super().__init__(TaskKind.TRAIN, model=RoundModel.of({"w": np.zeros(1)}),
                         aggregator=FedAvg().aggregator(1), target=target, min_results=1,
                         max_payload_bytes=1 << 20)


def _task(selected: int = 3, target: int = 3, min_results: int = 2) -> TaskRound:
    return TaskRound(kind=TaskKind.TRAIN, number=1, task_id="t1-train-r1",
                     selected=frozenset(f"c{i}" for i in range(selected)), target=target,
                     min_results=min_results, opened_at=T0, deadline=T0 + 60.0, model=None,
                     train_config=TrainConfig(), collector=_Collector(target))


def test_a_task_is_settled_at_its_deadline_not_before() -> None:
    task = _task()
    assert not task.is_settled(T0 + 59.999)
    assert task.is_settled(T0 + 60.0)
    assert task.closed_because(T0 + 60.0) == ": the deadline passed"


def test_a_task_is_settled_once_nobody_is_outstanding() -> None:
    task = _task()
    task.received.add("c0")
    task.gone["c1"] = LEFT
    assert not task.is_settled(T0)  # c2 is still open
    assert task.closed_because(T0) == ""
    task.gone["c2"] = "declined: busy"
    assert task.is_settled(T0)
    assert task.closed_because(T0) == (": every selected client answered or dropped out before "
                                       "the deadline (1 left; 1 declined: busy)")


def test_a_task_whose_clients_all_left_says_so() -> None:
    task = _task(selected=2)
    task.gone.update({"c0": LEFT, "c1": LEFT})
    assert task.is_settled(T0)
    assert task.closed_because(T0) == ": every selected client left before the deadline"
    assert not task.is_open_for("c0") and not task.has_work_for("c0")


def test_a_task_settles_early_at_its_target_of_results() -> None:
    task = _task(selected=4, target=2)
    task.received.add("c0")
    assert not task.is_settled(T0)
    task.received.add("c1")
    assert task.is_settled(T0)
    assert task.closed_because(T0) == ""  # two clients are still open: not the reason


def test_a_task_succeeds_at_exactly_its_minimum() -> None:
    task = _task(min_results=2)
    task.received.add("c0")
    assert not task.succeeded
    task.received.add("c1")
    assert task.succeeded


def test_a_task_is_open_only_for_selected_clients_that_neither_answered_nor_dropped() -> None:
    task = _task()
    task.received.add("c0")
    task.gone["c1"] = LEFT
    assert [task.is_open_for(c) for c in ("c0", "c1", "c2", "x")] == [False, False, True, False]
    assert [task.has_work_for(c) for c in ("c0", "c1", "c2", "x")] == [False, False, True, False]


def test_selection_may_take_every_available_client_but_not_more() -> None:
    pool = ["b", "a", "c"]
    assert sorted(select_clients(pool, 3, random.Random(1))) == ["a", "b", "c"]
    with pytest.raises(ValueError):
        select_clients(pool, 4, random.Random(1))
    first = round_rng(0, 2, "train/3").random()
    assert first == round_rng(0, 2, "train/3").random()
    assert first != round_rng(0, 2, "train/4").random() != round_rng(1, 2, "train/3").random()
