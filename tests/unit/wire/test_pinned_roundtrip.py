"""Every reply and secure-aggregation message survives the trip to protobuf and back (found
unpinned by benchmarks/mutation.py: gRPC integration tests cover these, the unit tests did not)."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.proto.v1 import secagg_pb2 as spb
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import Done, SubmitReply, Task, TaskKind, TrainConfig, Wait
from fedcore.secagg.messages import (
    EncryptedShares,
    GraphCommitment,
    GraphCommitments,
    MaskedInput,
    SealedShare,
    ShareRelay,
    UnmaskRequest,
)
from fedcore.wire import convert
from fedcore.wire.secagg import (
    client_message_from_proto,
    client_message_to_proto,
    server_step_from_proto,
    server_step_to_proto,
)
from fedcore.wire.tensor import iter_chunk_views, iter_chunks


def test_every_task_reply_round_trips() -> None:
    replies = [
        Task(round=3, task_id="t3", kind=TaskKind.TRAIN, time_left_s=12.5,
             train=TrainConfig(local_epochs=2, learning_rate=0.05)),
        Wait(retry_after_s=1.5, reason="waiting for 3 clients"),
        Done(reason="run finished"),
    ]

    for reply in replies:
        assert convert.task_reply_from_proto(convert.task_reply_to_proto(reply)) == reply


def test_a_submit_reply_round_trips_with_its_retry_hint() -> None:
    proto = convert.submit_reply_to_proto(SubmitReply(retry_after_s=2.0))

    assert proto.message == "accepted"
    assert convert.submit_reply_from_proto(proto) == SubmitReply(retry_after_s=2.0)


def test_a_masked_input_keeps_its_sender_and_takes_its_payload_separately() -> None:
    message = MaskedInput(sender=4, data=b"\x01\x02\x03\x04")

    decoded = client_message_from_proto(client_message_to_proto(message))

    assert isinstance(decoded, MaskedInput) and decoded.sender == 4


def test_a_share_relay_round_trips() -> None:
    relay = ShareRelay(recipient=2, shares=(SealedShare(sender=1, receiver=2, ciphertext=b"ab"),
                                            SealedShare(sender=3, receiver=2, ciphertext=b"cd")))

    assert server_step_from_proto(server_step_to_proto(relay)) == relay


def test_a_setup_of_an_unknown_mode_is_refused() -> None:
    message = spb.SecAggServerMessage(setup=spb.SecAggSetup(mode=99, threshold=1, max_clients=2,
                                                            clip=1.0, bit_width=16))

    with pytest.raises(WireError, match="unknown secure-aggregation mode"):
        server_step_from_proto(message)


def test_only_client_messages_are_encoded() -> None:
    with pytest.raises(TypeError, match="not a secure-aggregation client message"):
        client_message_to_proto(Done())  # type: ignore[arg-type]


def test_graph_commitments_and_unmask_requests_round_trip() -> None:
    steps = [
        GraphCommitments(recipient=1, commitments=(GraphCommitment(sender=1, commitment=b"x" * 32),
                                                   GraphCommitment(sender=2, commitment=b"y" * 32))),
        UnmaskRequest(recipient=1, survivors=(1, 3), dropped=(2,)),
    ]

    for step in steps:
        assert server_step_from_proto(server_step_to_proto(step)) == step


def test_the_default_chunks_carry_a_large_payload_in_pieces_of_at_most_one_mib() -> None:
    payload = {"w": np.arange(600_000, dtype=np.float32)}  # 2.4 MB

    chunks = list(iter_chunks(payload))

    assert [offset for offset, _ in chunks] == [0, 1 << 20, 2 << 20]
    assert b"".join(data for _, data in chunks) == payload["w"].tobytes()


def test_chunk_views_cross_tensor_boundaries_at_exact_offsets() -> None:
    payload = {"a": np.arange(10, dtype=np.uint8), "b": np.arange(10, 20, dtype=np.uint8)}

    chunks = [(offset, b"".join(bytes(v) for v in views))
              for offset, views in iter_chunk_views(payload, 8)]

    assert [(offset, len(data)) for offset, data in chunks] == [(0, 8), (8, 8), (16, 4)]
    assert b"".join(data for _, data in chunks) == bytes(range(20))


def test_encrypted_shares_round_trip() -> None:
    message = EncryptedShares(sender=2, shares=(SealedShare(sender=2, receiver=1, ciphertext=b"q"),
                                                SealedShare(sender=2, receiver=3, ciphertext=b"r")))

    assert client_message_from_proto(client_message_to_proto(message)) == message
