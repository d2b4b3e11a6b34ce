"""The join reply's long-poll hold and limits, and the retry hints, across the wire."""

from __future__ import annotations

import math

import pytest

from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import CoordinatorLimits, JoinReply, SubmitReply, Wait
from fedcore.wire import convert


def test_join_reply_round_trips() -> None:
    reply = JoinReply(
        session=b"s" * 16, client_timeout_s=30.0, long_poll_s=5.0,
        limits=CoordinatorLimits(max_message_bytes=8 << 20, max_payload_bytes=4 << 30,
                                 chunk_bytes=1 << 20, min_chunk_bytes=4096, max_metrics=64,
                                 max_metric_key_chars=64, max_client_id_bytes=256),
    )

    wire = pb.JoinReply.FromString(convert.join_reply_to_proto(reply).SerializeToString())

    assert convert.join_reply_from_proto(wire) == reply


def test_an_older_coordinators_reply_reads_as_not_stated() -> None:
    old = pb.JoinReply(session=b"s", client_timeout_s=30.0)  # what v1.0 coordinators send

    reply = convert.join_reply_from_proto(pb.JoinReply.FromString(old.SerializeToString()))

    assert reply.long_poll_s == 0.0
    assert reply.limits == CoordinatorLimits()


@pytest.mark.parametrize("field", ["client_timeout_s", "long_poll_s"])
@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_a_bad_hold_or_timeout_is_refused(field: str, value: float) -> None:
    msg = pb.JoinReply(session=b"s", client_timeout_s=30.0)
    setattr(msg, field, value)

    with pytest.raises(WireError, match=field):
        convert.join_reply_from_proto(msg)


def test_a_reply_without_session_is_refused() -> None:
    with pytest.raises(WireError, match="session"):
        convert.join_reply_from_proto(pb.JoinReply(client_timeout_s=30.0))


@pytest.mark.parametrize(
    ("sent", "read"), [(2.5, 2.5), (-3.0, 0.0), (math.nan, 0.0), (math.inf, 3600.0), (1e9, 3600.0)]
)
def test_retry_hints_are_clamped_so_a_client_neither_spins_on_garbage_nor_hangs(
    sent: float, read: float
) -> None:
    submit = convert.submit_reply_from_proto(pb.SubmitReply(retry_after_s=sent))
    wait = convert.task_reply_from_proto(pb.TaskReply(wait=pb.Wait(retry_after_s=sent)))

    assert submit == SubmitReply(retry_after_s=read)
    assert isinstance(wait, Wait) and wait.retry_after_s == read
