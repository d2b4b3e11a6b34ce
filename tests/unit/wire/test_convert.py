"""Unit tests: proto decoding refuses what a peer must not send."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import ResultHeader
from fedcore.wire.convert import (
    MAX_METRICS,
    result_header_from_proto,
    result_header_to_proto,
    spec_from_proto,
    task_reply_from_proto,
)


def header_msg(**metrics: float) -> pb.ResultHeader:
    header = ResultHeader(client_id="c", task_id="t", num_examples=1, metrics=metrics)
    return result_header_to_proto(header, b"s")


def test_unknown_dtype_code_raises() -> None:
    msg = tpb.ModelSpec(tensors=[tpb.TensorSpec(name="w", dtype=99, shape=[2])])

    with pytest.raises(WireError, match="unknown dtype code 99"):
        spec_from_proto(msg)


def test_unspecified_dtype_raises() -> None:
    msg = tpb.ModelSpec(tensors=[tpb.TensorSpec(name="w", shape=[2])])

    with pytest.raises(WireError, match="dtype"):
        spec_from_proto(msg)


def test_empty_tensor_name_raises() -> None:
    msg = tpb.ModelSpec(tensors=[tpb.TensorSpec(name="", dtype=tpb.FLOAT32, shape=[2])])

    with pytest.raises(WireError, match="name"):
        spec_from_proto(msg)


def test_duplicate_tensor_names_raise() -> None:
    t = tpb.TensorSpec(name="w", dtype=tpb.FLOAT32, shape=[2])

    with pytest.raises(WireError, match="duplicate"):
        spec_from_proto(tpb.ModelSpec(tensors=[t, t]))


def test_decoded_dtype_is_numpy_dtype() -> None:
    msg = tpb.ModelSpec(tensors=[tpb.TensorSpec(name="w", dtype=tpb.FLOAT16, shape=[])])

    assert spec_from_proto(msg).tensors[0].dtype == np.dtype("float16")


def test_too_many_metrics_raise() -> None:
    # the decoder's ceiling is part of the protocol (docs/protocol.md, 5.2): 256, whatever
    # `[limits] max_metrics` says, so the literal is pinned, not the constant
    assert MAX_METRICS == 256
    msg = header_msg(**{f"m{i}": 0.0 for i in range(257)})

    with pytest.raises(WireError, match="metrics"):
        result_header_from_proto(msg)


def test_metrics_at_the_limit_are_accepted() -> None:
    msg = header_msg(**{f"m{i}": 0.0 for i in range(256)})

    assert len(result_header_from_proto(msg).metrics) == 256


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_metric_raises(bad: float) -> None:
    with pytest.raises(WireError, match="'loss'"):
        result_header_from_proto(header_msg(loss=bad))


def test_unknown_task_kind_raises() -> None:
    msg = pb.TaskReply(task=pb.Task(round=1, task_id="t", kind=99))

    with pytest.raises(WireError, match="kind"):
        task_reply_from_proto(msg)


def test_empty_task_reply_raises() -> None:
    with pytest.raises(WireError):
        task_reply_from_proto(pb.TaskReply())


def test_bad_train_config_raises_wire_error() -> None:
    msg = pb.TaskReply(task=pb.Task(round=1, task_id="t", kind=pb.TRAIN, train=pb.TrainConfig()))

    with pytest.raises(WireError, match="train config"):
        task_reply_from_proto(msg)
