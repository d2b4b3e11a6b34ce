"""Every status code of docs/protocol.md section 6, produced over real gRPC by a raw client.

Each test plays a client written from the protos alone (plain stubs, no fedcore SDK) and
checks the code and that the refusal says what happened; the doc's table names these tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.engine.config import SecureAggregationConfig
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.specs import spec_of
from fedcore.secagg.roster import Roster
from fedcore.transport.grpc.server import CoordinatorServer
from fedcore.wire import convert
from fedcore.wire.tensor import iter_chunks

pytestmark = pytest.mark.timeout(60)
Code = grpc.StatusCode
MODEL = {"w": np.zeros((2, 3), np.float32), "n": np.array([200], np.uint8)}


def update(w: float = 0.5, n: int = 1) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), w, np.float32), "n": np.array([n], np.uint8)}


class RawClient:
    """A client that speaks the protos directly."""

    def __init__(self, port: int, client_id: str) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.CoordinatorStub(self.channel)
        self.client_id = client_id
        self.session = b""

    def join(self, **fields: object) -> pb.JoinReply:
        request = pb.JoinRequest(client_id=self.client_id, protocol_version=1)
        for key, value in fields.items():
            setattr(request, key, value)
        reply: pb.JoinReply = self.stub.Join(request, timeout=10)
        self.session = reply.session
        return reply

    def credentials(self) -> pb.Credentials:
        return pb.Credentials(client_id=self.client_id, session=self.session)

    def get_task(self, credentials: pb.Credentials | None = None) -> pb.TaskReply:
        request = pb.TaskRequest(credentials=credentials or self.credentials())
        reply: pb.TaskReply = self.stub.GetTask(request, timeout=10)
        return reply

    def task(self) -> pb.Task:
        reply = self.get_task()
        assert reply.WhichOneof("reply") == "task", reply
        return reply.task

    def download(self, task_id: str) -> list[pb.ModelChunk]:
        request = pb.DownloadRequest(credentials=self.credentials(), task_id=task_id)
        return list(self.stub.DownloadModel(request, timeout=10))

    def header(self, task_id: str, tensors: dict[str, np.ndarray], **fields: object) -> pb.ResultHeader:
        header = pb.ResultHeader(credentials=self.credentials(), task_id=task_id, num_examples=5,
                                 spec=convert.spec_to_proto(spec_of(tensors)))
        for key, value in fields.items():
            setattr(header, key, value)
        return header

    def submit(self, messages: Iterable[pb.ResultChunk]) -> pb.SubmitReply:
        reply: pb.SubmitReply = self.stub.SubmitResult(iter(messages), timeout=10)
        return reply

    def submit_result(self, task_id: str, tensors: dict[str, np.ndarray], **fields: object) -> pb.SubmitReply:
        return self.submit(result_messages(self.header(task_id, tensors, **fields), tensors))

    def leave(self) -> None:
        self.stub.Leave(pb.LeaveRequest(credentials=self.credentials()), timeout=10)


def result_messages(header: pb.ResultHeader, tensors: dict[str, np.ndarray]) -> Iterator[pb.ResultChunk]:
    yield pb.ResultChunk(header=header)
    for offset, data in iter_chunks(tensors, 4096):
        yield pb.ResultChunk(chunk=tpb.Chunk(offset=offset, data=data))


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


@pytest.fixture
def coordinator(start_coordinator) -> Callable[..., CoordinatorServer]:  # type: ignore[no-untyped-def]
    def start(*, clients: int = 1, initial: bool = True, **engine: object) -> CoordinatorServer:
        settings: dict[str, object] = {
            "num_rounds": 2, "train": SelectionConfig(count=clients), "evaluate": None,
            "round_timeout_s": 30.0, "max_payload_bytes": 1 << 16}
        settings.update(engine)
        model = {k: v.copy() for k, v in MODEL.items()} if initial else None
        server: CoordinatorServer = start_coordinator(EngineConfig(**settings), model)  # type: ignore[arg-type]
        return server

    return start


@pytest.fixture
def one(coordinator) -> tuple[CoordinatorServer, RawClient, pb.Task]:  # type: ignore[no-untyped-def]
    """A coordinator whose round waits for 2 results, one joined client and its TRAIN task."""
    server = coordinator(clients=1)
    client = RawClient(server.port, "c0")
    client.join()
    return server, client, client.task()


# ---------------------------------------------------------------- Join
def test_unauthenticated_on_join_for_a_wrong_token(start_coordinator) -> None:  # type: ignore[no-untyped-def]
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None)
    server = start_coordinator(config, MODEL, auth_token="s3cret")
    client = RawClient(server.port, "c0")

    code, details = refused(lambda: client.join(auth_token="guess"))

    assert code is Code.UNAUTHENTICATED and "token" in details
    assert client.join(auth_token="s3cret").session


def test_failed_precondition_on_join_for_an_unknown_protocol_version(coordinator) -> None:  # type: ignore[no-untyped-def]
    client = RawClient(coordinator().port, "c0")

    code, details = refused(lambda: client.join(protocol_version=2))

    assert code is Code.FAILED_PRECONDITION and "protocol version 2" in details


@pytest.mark.parametrize("client_id", ["", "my phone", "tab\there", "caf\u00e9", "x" * 257])
def test_invalid_argument_on_join_for_a_bad_client_id(coordinator, client_id: str) -> None:  # type: ignore[no-untyped-def]
    client = RawClient(coordinator().port, client_id)

    code, details = refused(client.join)

    assert code is Code.INVALID_ARGUMENT and "client_id" in details


def test_join_accepts_the_longest_visible_ascii_id(coordinator) -> None:  # type: ignore[no-untyped-def]
    client = RawClient(coordinator().port, "!~" * 128)

    assert client.join().session


def test_permission_denied_on_join_for_a_client_not_on_the_roster(coordinator) -> None:  # type: ignore[no-untyped-def]
    roster = Roster({"site-0": bytes(32), "site-1": bytes(range(32))})
    server = coordinator(secagg=SecureAggregationConfig(max_clients=2, roster=roster))
    client = RawClient(server.port, "mallory")

    code, details = refused(client.join)

    assert code is Code.PERMISSION_DENIED and "roster" in details


def test_the_join_reply_states_the_hold_and_the_limits(coordinator) -> None:  # type: ignore[no-untyped-def]
    server = coordinator()

    reply = RawClient(server.port, "c0").join()

    assert reply.long_poll_s == 1.0  # the fixture's server setting
    assert reply.limits.max_payload_bytes == 1 << 16
    assert reply.limits.max_message_bytes == 8 << 20
    assert reply.limits.chunk_bytes > 0 and reply.limits.min_chunk_bytes > 0
    assert reply.limits.max_client_id_bytes == 256


# ---------------------------------------------------------------- credentials
def test_unauthenticated_for_a_request_without_credentials(one) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = one

    code, details = refused(lambda: client.get_task(pb.Credentials()))

    assert code is Code.UNAUTHENTICATED and "Join" in details


def test_unauthenticated_for_a_stale_session(one) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = one
    stale = client.credentials()
    client.join()  # joining again invalidates the old session

    code, _ = refused(lambda: client.get_task(stale))

    assert code is Code.UNAUTHENTICATED
    assert client.get_task().WhichOneof("reply") == "task"  # the new session works


def test_not_found_for_a_client_that_left(one) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = one
    client.leave()

    code, details = refused(client.get_task)

    assert code is Code.NOT_FOUND and "Join" in details


# ---------------------------------------------------------------- DownloadModel
def test_failed_precondition_for_a_download_of_a_task_not_assigned(one) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = one

    code, _ = refused(lambda: client.download("no-such-task"))

    assert code is Code.FAILED_PRECONDITION


def test_failed_precondition_for_a_download_in_an_initialize_task(coordinator) -> None:  # type: ignore[no-untyped-def]
    client = RawClient(coordinator(initial=False).port, "c0")
    client.join()
    task = client.task()
    assert task.kind == pb.INITIALIZE

    code, details = refused(lambda: client.download(task.task_id))

    assert code is Code.FAILED_PRECONDITION and "INITIALIZE" in details
    # what the client must do instead: send its own parameters
    assert client.submit_result(task.task_id, MODEL, num_examples=1).message == "accepted"


# ---------------------------------------------------------------- SubmitResult
def test_invalid_argument_when_the_first_message_is_not_a_header(one) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = one

    code, details = refused(lambda: client.submit([pb.ResultChunk(chunk=tpb.Chunk(offset=0))]))

    assert code is Code.INVALID_ARGUMENT and "header" in details


@pytest.mark.parametrize(
    ("tensors", "fields", "says"),
    [
        (update(w=float("nan")), {}, "NaN"),
        ({"w": np.zeros((3, 2), np.float32), "n": np.array([1], np.uint8)}, {}, "shape"),
        (update(), {"num_examples": 0}, "num_examples"),
        (update(n=100), {}, "cannot be represented"),  # UINT8 200 + 100 leaves the range
    ],
    ids=["nan", "shape", "num_examples", "integer range"],
)
def test_invalid_argument_for_a_malformed_result(one, tensors, fields, says) -> None:  # type: ignore[no-untyped-def]
    _, client, task = one

    code, details = refused(lambda: client.submit_result(task.task_id, tensors, **fields))

    assert code is Code.INVALID_ARGUMENT and says in details
    assert client.submit_result(task.task_id, update()).message == "accepted"  # nothing changed


def test_invalid_argument_for_a_chunk_out_of_order(one) -> None:  # type: ignore[no-untyped-def]
    _, client, task = one
    header = client.header(task.task_id, update())
    chunk = pb.ResultChunk(chunk=tpb.Chunk(offset=8, data=b"\0" * 8))

    code, _ = refused(lambda: client.submit([pb.ResultChunk(header=header), chunk]))

    assert code is Code.INVALID_ARGUMENT


def test_invalid_argument_for_a_stream_that_ends_early(one) -> None:  # type: ignore[no-untyped-def]
    _, client, task = one
    messages = list(result_messages(client.header(task.task_id, update()), update()))

    code, _ = refused(lambda: client.submit(messages[:1]))

    assert code is Code.INVALID_ARGUMENT


def test_invalid_argument_for_a_chunk_after_a_decline(one) -> None:  # type: ignore[no-untyped-def]
    _, client, task = one
    header = client.header(task.task_id, {}, declined_reason="busy")
    chunk = pb.ResultChunk(chunk=tpb.Chunk(offset=0, data=b"\0" * 8))

    code, details = refused(lambda: client.submit([pb.ResultChunk(header=header), chunk]))

    assert code is Code.INVALID_ARGUMENT and "decline" in details


def test_resource_exhausted_for_a_payload_over_the_limit(coordinator) -> None:  # type: ignore[no-untyped-def]
    server = coordinator(max_payload_bytes=16)  # the model's update takes 25 bytes
    client = RawClient(server.port, "c0")
    client.join()
    task = client.task()

    code, details = refused(lambda: client.submit_result(task.task_id, update()))

    assert code is Code.RESOURCE_EXHAUSTED and "max_payload_bytes" in details


def test_resource_exhausted_for_bytes_beyond_the_announced_length(one) -> None:  # type: ignore[no-untyped-def]
    _, client, task = one
    messages = list(result_messages(client.header(task.task_id, update()), update()))
    extra = pb.ResultChunk(chunk=tpb.Chunk(offset=25, data=b"\0"))

    code, _ = refused(lambda: client.submit([*messages, extra]))

    assert code is Code.RESOURCE_EXHAUSTED


def test_already_exists_for_a_second_result_while_the_task_is_open(coordinator) -> None:  # type: ignore[no-untyped-def]
    server = coordinator(clients=2)  # the round waits for both
    first, second = RawClient(server.port, "c0"), RawClient(server.port, "c1")
    first.join()
    second.join()
    task = first.task()
    first.submit_result(task.task_id, update())

    code, _ = refused(lambda: first.submit_result(task.task_id, update()))

    assert code is Code.ALREADY_EXISTS


def test_failed_precondition_for_a_result_after_the_task_closed(one) -> None:  # type: ignore[no-untyped-def]
    _, client, task = one
    client.submit_result(task.task_id, update())  # the round's one result: it closes

    code, details = refused(lambda: client.submit_result(task.task_id, update()))

    assert code is Code.FAILED_PRECONDITION and "closed" in details


def test_failed_precondition_for_a_result_after_a_decline(coordinator) -> None:  # type: ignore[no-untyped-def]
    server = coordinator(clients=2)  # the round stays open after one decline
    client, other = RawClient(server.port, "c0"), RawClient(server.port, "c1")
    client.join()
    other.join()
    task = client.task()
    reply = client.submit_result(task.task_id, {}, declined_reason="busy")

    code, details = refused(lambda: client.submit_result(task.task_id, update()))

    assert reply.retry_after_s > 0  # the hint after a decline: do not spin
    assert code is Code.FAILED_PRECONDITION and "declined" in details


def test_failed_precondition_for_a_result_to_a_task_not_assigned(one) -> None:  # type: ignore[no-untyped-def]
    _, client, _ = one

    code, _ = refused(lambda: client.submit_result("no-such-task", update()))

    assert code is Code.FAILED_PRECONDITION


def test_an_accepted_result_says_poll_again_at_once(one) -> None:  # type: ignore[no-untyped-def]
    _, client, task = one

    reply = client.submit_result(task.task_id, update())

    assert (reply.message, reply.retry_after_s) == ("accepted", 0.0)


# ---------------------------------------------------------------- health (section 1.1)
def test_health_serves_both_names_without_credentials_and_not_found_for_others(coordinator) -> None:  # type: ignore[no-untyped-def]
    server = coordinator()
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    serving = health_pb2.HealthCheckResponse.SERVING

    for name in ("", "fedcore.v1.Coordinator"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == serving
    code, _ = refused(lambda: stub.Check(health_pb2.HealthCheckRequest(service="x"), timeout=10))

    assert code is Code.NOT_FOUND


# ---------------------------------------------------------------- the coordinator is gone
def test_unavailable_when_the_coordinator_is_down(coordinator) -> None:  # type: ignore[no-untyped-def]
    server = coordinator()
    client = RawClient(server.port, "c0")
    client.join()
    server.stop()

    code, _ = refused(client.get_task)

    assert code is Code.UNAVAILABLE
