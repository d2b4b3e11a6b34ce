"""Malformed, unauthorised, late and oversized results over real gRPC: refused, nothing changes."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.messages import ResultHeader, Task, TaskResult
from fedcore.protocol.specs import spec_of
from fedcore.transport.grpc.client_connection import GrpcConnection
from fedcore.wire import convert
from fedcore.wire.tensor import iter_chunks

pytestmark = pytest.mark.timeout(60)
INITIAL = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


@pytest.fixture
def session(start_coordinator):
    config = EngineConfig(
        num_rounds=2, train=SelectionConfig(count=1), evaluate=None, round_timeout_s=30.0,
        max_payload_bytes=1 << 20,
    )
    server = start_coordinator(config, {k: v.copy() for k, v in INITIAL.items()})
    conn = GrpcConnection(f"127.0.0.1:{server.port}", client_id="c0")
    conn.join()
    task = conn.get_task()
    assert isinstance(task, Task)
    stub = pb_grpc.CoordinatorStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    yield server, conn, task, stub
    conn.close()


def _submit(stub, header: pb.ResultHeader, tensors: dict[str, np.ndarray], extra: bytes = b"") -> None:
    def messages() -> Iterator[pb.ResultChunk]:
        yield pb.ResultChunk(header=header)
        end = 0
        for offset, data in iter_chunks(tensors, 64):
            yield pb.ResultChunk(chunk=tpb.Chunk(offset=offset, data=data))
            end = offset + len(data)
        if extra:
            yield pb.ResultChunk(chunk=tpb.Chunk(offset=end, data=extra))

    stub.SubmitResult(messages(), timeout=10)


def _header(conn: GrpcConnection, task_id: str, tensors: dict[str, np.ndarray], **kw: object) -> pb.ResultHeader:
    header = ResultHeader(client_id=conn.client_id, task_id=task_id, num_examples=5,
                          spec=spec_of(tensors), metrics={"loss": 1.0})
    msg = convert.result_header_to_proto(header, conn.session)
    for key, value in kw.items():
        if key == "client_id":
            msg.credentials.client_id = value
        elif key == "session":
            msg.credentials.session = value
        else:
            setattr(msg, key, value)
    return msg


def _good() -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), 0.5, np.float32), "b": np.full(3, -1.0, np.float32)}


CASES = {
    "wrong shape": (lambda: {"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}, {},
                    grpc.StatusCode.INVALID_ARGUMENT, "shape"),
    "wrong dtype": (lambda: {"w": np.zeros((2, 3), np.float64), "b": np.zeros(3, np.float32)}, {},
                    grpc.StatusCode.INVALID_ARGUMENT, "dtype"),
    "missing tensor": (lambda: {"w": np.zeros((2, 3), np.float32)}, {},
                       grpc.StatusCode.INVALID_ARGUMENT, "names"),
    "nan": (lambda: {"w": np.full((2, 3), np.nan, np.float32), "b": np.zeros(3, np.float32)}, {},
            grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
    "inf": (lambda: {"w": np.zeros((2, 3), np.float32), "b": np.full(3, np.inf, np.float32)}, {},
            grpc.StatusCode.INVALID_ARGUMENT, "NaN or infinite"),
    "unknown client": (_good, {"client_id": "mallory"}, grpc.StatusCode.NOT_FOUND, "unknown"),
    "wrong session": (_good, {"session": b"x" * 16}, grpc.StatusCode.UNAUTHENTICATED, "session"),
    "wrong task": (_good, {"task_id": "t9-train-r7"}, grpc.StatusCode.FAILED_PRECONDITION, "no open"),
    "zero examples": (_good, {"num_examples": 0}, grpc.StatusCode.INVALID_ARGUMENT, "num_examples"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_result_is_refused_and_the_aggregate_is_unchanged(session, case: str) -> None:
    server, conn, task, stub = session
    make, overrides, code, words = CASES[case]
    tensors = make()
    header = _header(conn, overrides.pop("task_id", task.task_id) if "task_id" in overrides
                     else task.task_id, tensors, **overrides)

    with pytest.raises(grpc.RpcError) as err:
        _submit(stub, header, tensors)

    assert err.value.code() is code
    assert words in err.value.details()
    # the good result still produces exactly initial + its update
    conn.submit(TaskResult(header=ResultHeader(client_id="c0", task_id=task.task_id, num_examples=5,
                                               spec=spec_of(_good())), tensors=_good()))
    np.testing.assert_array_equal(server.engine.params["w"], _good()["w"])
    np.testing.assert_array_equal(server.engine.params["b"], _good()["b"])


def test_bytes_beyond_the_announced_payload_are_refused(session) -> None:
    server, conn, task, stub = session
    with pytest.raises(grpc.RpcError) as err:
        _submit(stub, _header(conn, task.task_id, _good()), _good(), extra=b"\0" * 8)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.engine.records == [] and server.engine.round_number == 1


def test_payload_over_the_configured_limit_is_refused_before_upload(session) -> None:
    server, conn, task, stub = session
    big = {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    header = _header(conn, task.task_id, big)
    header.spec.tensors[1].shape[:] = [1 << 19]  # announces 2 MiB, over the 1 MiB limit
    with pytest.raises(grpc.RpcError) as err:
        _submit(stub, header, {})
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert server.engine.round_number == 1 and server.engine.records == []


def test_a_message_larger_than_the_transport_limit_is_refused(session) -> None:
    server, conn, task, stub = session

    def messages() -> Iterator[pb.ResultChunk]:
        yield pb.ResultChunk(header=_header(conn, task.task_id, _good()))
        yield pb.ResultChunk(chunk=tpb.Chunk(offset=0, data=b"\0" * (9 << 20)))

    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitResult(messages(), timeout=10)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert server.engine.records == []


def test_header_must_come_first(session) -> None:
    _, _, _, stub = session
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitResult(iter([pb.ResultChunk(chunk=tpb.Chunk(offset=0, data=b"x"))]), timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_replayed_result_is_refused(session) -> None:
    server, conn, task, stub = session
    result = TaskResult(header=ResultHeader(client_id="c0", task_id=task.task_id, num_examples=5,
                                            spec=spec_of(_good())), tensors=_good())
    conn.submit(result)
    after_first = {k: v.copy() for k, v in server.engine.params.items()}
    with pytest.raises(grpc.RpcError) as err:
        conn.submit(result)
    assert err.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    for name, value in after_first.items():
        np.testing.assert_array_equal(server.engine.params[name], value)
