"""The plain collector's contract (fedcore.engine.collect), driven directly: it refuses with an
`EngineError` (never another exception) a train result when it holds no model, books each
accepted result as complete with its example count as metrics weight, is settled once the
target is reached or nobody is left open, fails below `min_results`, and measures the bytes
of the payloads it accepted."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.compression.codec import UPLOAD_BYTES
from fedcore.engine.collect import PlainCollector, RoundFailed
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.model import RoundModel
from fedcore.protocol.messages import ResultHeader, TaskKind, TaskResult
from fedcore.protocol.params import Array
from fedcore.protocol.specs import spec_of
from fedcore.strategy import FedAvg

MODEL = RoundModel.of({"w": np.zeros(3, np.float32), "b": np.zeros((), np.float32)})


def _collector(*, model: RoundModel | None = MODEL, target: int = 2,
               min_results: int = 1) -> PlainCollector:
    return PlainCollector(TaskKind.TRAIN, model=model, aggregator=FedAvg().aggregator(1),
                          target=target, min_results=min_results, max_payload_bytes=1 << 20)


def _result(cid: str, fill: float, num_examples: int) -> TaskResult:
    tensors: dict[str, Array] = {"w": np.full(3, fill, np.float32), "b": np.array(fill, np.float32)}
    header = ResultHeader(client_id=cid, task_id="t1", num_examples=num_examples,
                          spec=spec_of(tensors))
    return TaskResult(header=header, tensors=tensors)


def test_a_train_collector_without_a_model_refuses_results_as_an_engine_error() -> None:
    collector = _collector(model=None)
    with pytest.raises(EngineError) as err:
        collector.expected_spec("t1", _result("a", 1.0, 1).header)
    assert err.value.reason is Reason.INVALID and "no model" in str(err.value)
    assert collector.received == 0


def test_each_accepted_result_is_complete_and_weighted_by_its_examples() -> None:
    collector = _collector()
    first = collector.accept("a", _result("a", 1.0, 3), now=0.0)
    second = collector.accept("b", _result("b", 5.0, 1), now=0.0)
    assert (first.metrics_weight, first.complete) == (3.0, True)
    assert (second.metrics_weight, second.complete) == (1.0, True)
    aggregate = collector.aggregate()
    assert aggregate.count == 2 and aggregate.total_weight == 4.0
    assert aggregate.update["w"].tolist() == [2.0, 2.0, 2.0]  # (3 * 1 + 1 * 5) / 4


def test_the_upload_measured_is_the_accepted_payloads_together() -> None:
    collector = _collector()
    for i in range(3):
        collector.accept(f"c{i}", _result(f"c{i}", 1.0, 1), now=0.0)
    nbytes = spec_of(_result("x", 0.0, 1).tensors).nbytes
    assert nbytes == 16
    assert collector.upload_bytes == 3 * nbytes
    assert collector.aggregate().measurements[UPLOAD_BYTES] == 3.0 * nbytes


def test_settled_at_the_target_or_when_nobody_is_left_open() -> None:
    collector = _collector(target=3)
    assert not collector.settled(received=2, outstanding=1)
    assert not collector.settled(received=0, outstanding=4)
    assert collector.settled(received=3, outstanding=1)
    assert collector.settled(received=4, outstanding=0)
    assert collector.settled(received=1, outstanding=0)
    assert collector.settled(received=0, outstanding=0)


def test_fewer_results_than_the_minimum_fail_the_round() -> None:
    collector = _collector(min_results=2)
    collector.accept("a", _result("a", 1.0, 1), now=0.0)
    with pytest.raises(RoundFailed, match="1 results, 2 needed"):
        collector.aggregate()
    collector.accept("b", _result("b", 1.0, 1), now=0.0)
    assert collector.aggregate().count == 2


def test_an_evaluation_has_no_aggregate_and_fails_as_a_round_failure() -> None:
    collector = PlainCollector(TaskKind.EVALUATE, model=None, aggregator=None, target=1,
                               min_results=1, max_payload_bytes=1 << 20)
    header = ResultHeader(client_id="a", task_id="t2", num_examples=4, metrics={"loss": 1.0})
    assert collector.expected_spec("t2", header).tensors == ()
    accepted = collector.accept("a", TaskResult(header=header), now=0.0)
    assert (accepted.metrics_weight, accepted.complete) == (4.0, True)
    with pytest.raises(RoundFailed, match="evaluate task has no aggregate"):
        collector.aggregate()


def test_an_initialize_result_is_the_aggregate_as_sent() -> None:
    collector = PlainCollector(TaskKind.INITIALIZE, model=None, aggregator=None, target=1,
                               min_results=1, max_payload_bytes=1 << 20)
    result = _result("a", 3.0, 7)
    assert collector.expected_spec("t0", result.header) == result.header.spec
    collector.accept("a", result, now=0.0)
    aggregate = collector.aggregate()
    assert aggregate.count == 1 and aggregate.total_weight == 1.0
    assert aggregate.update is result.tensors
