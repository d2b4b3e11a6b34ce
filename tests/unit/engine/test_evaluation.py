"""Federated evaluation rounds: example-weighted loss and accuracy in the round record."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine import EngineError, Phase, Reason, SelectionConfig
from fedcore.protocol.messages import TaskKind

ALL_THREE = SelectionConfig(count=3, min_available=3)


def trained(make_harness, **overrides):
    settings = {"clients": 3, "train": ALL_THREE, "evaluate": ALL_THREE}
    h = make_harness(**(settings | overrides))
    h.play_round(
        {c: (1.0, 10) for c in ("c0", "c1", "c2")},
        metrics={"c0": {"loss": 2.0}, "c1": {"loss": 1.0}, "c2": {"loss": 4.0}},
    )
    return h


def test_evaluation_follows_training(make_harness) -> None:
    h = trained(make_harness)

    assert h.engine.phase is Phase.EVALUATING
    assert {t.kind for t in h.tasks().values()} == {TaskKind.EVALUATE}


def test_evaluation_uses_the_new_model(make_harness, model) -> None:
    h = trained(make_harness)
    cid, task = next(iter(h.tasks().items()))

    np.testing.assert_allclose(h.download(cid, task)["w"], model["w"] + 1.0)


def test_record_holds_example_weighted_eval_and_train_metrics(make_harness) -> None:
    h = trained(make_harness)
    tasks = h.tasks()
    for cid, n, loss, acc in (("c0", 10, 1.0, 0.5), ("c1", 30, 2.0, 0.9), ("c2", 60, 0.5, 0.8)):
        h.submit(cid, tasks[cid], {}, num_examples=n, metrics={"loss": loss, "accuracy": acc})

    (record,) = h.engine.records
    assert record.loss == pytest.approx((10 * 1.0 + 30 * 2.0 + 60 * 0.5) / 100)
    assert record.accuracy == pytest.approx((10 * 0.5 + 30 * 0.9 + 60 * 0.8) / 100)
    assert record.train_loss == pytest.approx((2.0 + 1.0 + 4.0) / 3)
    assert record.eval_clients == 3


def test_extra_eval_metrics_are_kept(make_harness) -> None:
    h = trained(make_harness)
    tasks = h.tasks()
    for cid in tasks:
        h.submit(cid, tasks[cid], {}, num_examples=1, metrics={"loss": 1.0, "f1": 0.5})

    assert h.engine.records[0].metrics["f1"] == pytest.approx(0.5)


def test_evaluation_result_with_tensors_is_refused(make_harness) -> None:
    h = trained(make_harness)
    cid, task = next(iter(h.tasks().items()))
    before = h.snapshot()

    with pytest.raises(EngineError) as err:
        h.submit(cid, task, h.delta(1.0), num_examples=1)

    assert err.value.reason is Reason.INVALID
    assert h.snapshot() == before


def test_failed_evaluation_keeps_the_trained_model(make_harness, model) -> None:
    h = trained(make_harness)

    h.advance(30.0)

    (record,) = h.engine.records
    assert (record.status, record.loss) == ("ok", None)
    assert "evaluation failed" in record.reason
    np.testing.assert_allclose(h.engine.params["w"], model["w"] + 1.0)


def test_evaluation_runs_every_eval_every_rounds(make_harness) -> None:
    h = make_harness(
        clients=1,
        num_rounds=3,
        eval_every=2,
        train=SelectionConfig(count=1),
        evaluate=SelectionConfig(count=1),
    )
    kinds = []
    while h.engine.phase is not Phase.DONE:
        task = h.poll("c0")
        kinds.append(task.kind)
        h.submit("c0", task, None if task.kind is TaskKind.TRAIN else {}, metrics={"loss": 1.0})

    # evaluation after round 2 (eval_every) and after the last round
    assert kinds == [
        TaskKind.TRAIN,
        TaskKind.TRAIN,
        TaskKind.EVALUATE,
        TaskKind.TRAIN,
        TaskKind.EVALUATE,
    ]
    assert [r.loss is None for r in h.engine.records] == [True, False, False]


def test_without_evaluation_the_record_has_no_eval_metrics(make_harness) -> None:
    h = make_harness(clients=1)
    h.play_round({"c0": (1.0, 5)})

    (record,) = h.engine.records
    assert (record.loss, record.accuracy, record.eval_clients) == (None, None, 0)
