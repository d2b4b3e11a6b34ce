"""The client's task handler refuses to send what the coordinator would have to reject: the
mutation run (benchmarks/mutation.py) found these checks unpinned. Each refusal is asserted by
its type, and by the handler sending nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.client import ClientAppError, EvalResult, FitResult, FunctionalApp, TaskHandler
from fedcore.compression.codec import Compression, Compressor, Kind
from fedcore.protocol.messages import Task, TaskKind, TrainConfig
from fedcore.protocol.params import Params
from fedcore.protocol.specs import spec_of

from .conftest import MODEL


def _task(kind: TaskKind = TaskKind.TRAIN) -> Task:
    return Task(round=1, task_id="t1", kind=kind, train=TrainConfig(), model_spec=spec_of(MODEL))


def _app(*, metrics: dict[str, float], examples: int = 5) -> FunctionalApp:
    def fit(params: Params, config: TrainConfig) -> FitResult:
        return FitResult(params={k: v + 1 for k, v in params.items()}, num_examples=examples,
                         metrics=metrics)

    return FunctionalApp(get_parameters=lambda: dict(MODEL), fit=fit,
                         evaluate=lambda p, c: EvalResult(loss=1.0, num_examples=examples,
                                                          metrics=metrics))


@pytest.mark.parametrize("kind", [TaskKind.TRAIN, TaskKind.EVALUATE])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_metric_is_refused_before_anything_is_sent(kind: TaskKind, bad: float) -> None:
    handler = TaskHandler(_app(metrics={"loss_after": bad}), "c1")

    with pytest.raises(ClientAppError, match="not finite"):
        handler.handle(_task(kind), {k: v.copy() for k, v in MODEL.items()})


@pytest.mark.parametrize("examples", [0, -1])
def test_fewer_than_one_example_is_refused(examples: int) -> None:
    handler = TaskHandler(_app(metrics={}, examples=examples), "c1")

    with pytest.raises(ClientAppError, match="num_examples"):
        handler.handle(_task(), {k: v.copy() for k, v in MODEL.items()})


def test_finite_metrics_are_sent_as_floats() -> None:
    handler = TaskHandler(_app(metrics={"acc": np.float32(0.25)}), "c1")  # type: ignore[dict-item]

    result = handler.handle(_task(), {k: v.copy() for k, v in MODEL.items()})

    assert result.header.metrics == {"acc": 0.25}
    assert type(result.header.metrics["acc"]) is float
    np.testing.assert_array_equal(result.tensors["w"], np.ones(3, np.float32))


def test_a_secure_step_for_an_unknown_round_is_refused() -> None:
    handler = TaskHandler(_app(metrics={}), "c1")

    with pytest.raises(ClientAppError, match="no secure-aggregation state"):
        handler.handle(_task(TaskKind.SECAGG), None)


def test_a_plain_round_sends_the_compressed_update_when_compression_is_on() -> None:
    compressor = Compressor(Compression(kind=Kind.QUANTIZE, bits=8), rng=np.random.default_rng(0))
    handler = TaskHandler(_app(metrics={}), "c1", compressor=compressor)

    result = handler.handle(_task(), {k: v.copy() for k, v in MODEL.items()})

    assert "w" not in result.tensors  # not the dense update
    codes = [name for name in result.tensors if name.startswith("w") and name.endswith("q8")]
    assert len(codes) == 1 and result.tensors[codes[0]].dtype == np.uint8


def test_a_deadline_under_a_second_away_still_bounds_training() -> None:
    from dataclasses import replace

    from fedcore.client.handler import limit_train_time

    task = replace(_task(), time_left_s=0.5)

    limited = limit_train_time(task, local_max_s=0.0, elapsed_s=0.0)
    assert limited is not None and limited.train.max_train_s == 0.5
    assert limit_train_time(task, local_max_s=0.0, elapsed_s=0.5) is None  # no time left
