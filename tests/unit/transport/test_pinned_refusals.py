"""Refusals over real gRPC, asserted by their status code and their effect (nothing changes),
not only by their wording.

- A session that is empty, truncated, another client's, or one byte longer, is refused on
  GetTask, SubmitResult and Leave, and the client's state is untouched: its task stays open,
  its real session still works, and its result is then accepted (the forged one left nothing).
- A result that arrives after its round's deadline is refused because the deadline passed, even
  when no tick has closed the round yet (the server's ticker is parked): the service ticks when a
  result's header arrives and `RoundEngine.submit` lets time pass before it looks at the result
  (either suffices; with neither the late result would be folded in).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.engine import Phase
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.specs import spec_of
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer
from fedcore.wire import convert
from fedcore.wire.tensor import iter_chunks

pytestmark = pytest.mark.timeout(60)
Code = grpc.StatusCode
MODEL = {"w": np.zeros(4, np.float32)}
UPDATE = {"w": np.full(4, 2.0, np.float32)}


def _messages(credentials: pb.Credentials, task_id: str) -> Iterator[pb.ResultChunk]:
    header = pb.ResultHeader(credentials=credentials, task_id=task_id, num_examples=5,
                             spec=convert.spec_to_proto(spec_of(UPDATE)))
    yield pb.ResultChunk(header=header)
    for offset, data in iter_chunks(UPDATE, 4096):
        yield pb.ResultChunk(chunk=tpb.Chunk(offset=offset, data=data))


def _refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


@pytest.fixture
def served() -> Iterator[Callable[..., tuple[CoordinatorServer, pb_grpc.CoordinatorStub]]]:
    servers: list[CoordinatorServer] = []
    channels: list[grpc.Channel] = []

    def start(engine: RoundEngine, **kwargs: object) -> tuple[CoordinatorServer, pb_grpc.CoordinatorStub]:
        server = CoordinatorServer(engine, long_poll_s=0.2, linger_s=0.5, **kwargs)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        channels.append(channel)
        return server, pb_grpc.CoordinatorStub(channel)

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop()


def _engine(**settings: object) -> RoundEngine:
    config = EngineConfig(num_rounds=1, evaluate=None, **settings)  # type: ignore[arg-type]
    return RoundEngine(config, FedAvg(), initial_params={k: v.copy() for k, v in MODEL.items()},
                       initial_from_client=False)


def _join(stub: pb_grpc.CoordinatorStub, client_id: str) -> pb.Credentials:
    reply = stub.Join(pb.JoinRequest(client_id=client_id, protocol_version=1), timeout=10)
    return pb.Credentials(client_id=client_id, session=reply.session)


def _task(stub: pb_grpc.CoordinatorStub, credentials: pb.Credentials) -> pb.Task:
    for _ in range(100):
        reply = stub.GetTask(pb.TaskRequest(credentials=credentials), timeout=10)
        if reply.WhichOneof("reply") == "task":
            return reply.task
    raise AssertionError("no task")


def _calls(stub: pb_grpc.CoordinatorStub, credentials: pb.Credentials,
           task_id: str) -> dict[str, Callable[[], object]]:
    return {
        "GetTask": lambda: stub.GetTask(pb.TaskRequest(credentials=credentials), timeout=10),
        "SubmitResult": lambda: stub.SubmitResult(_messages(credentials, task_id), timeout=10),
        "Leave": lambda: stub.Leave(pb.LeaveRequest(credentials=credentials), timeout=10),
    }


def test_forged_sessions_are_refused_everywhere_and_change_nothing(served) -> None:  # type: ignore[no-untyped-def]
    engine = _engine(train=SelectionConfig(count=2), round_timeout_s=30.0)
    _, stub = served(engine)
    mine, other = _join(stub, "c0"), _join(stub, "c1")
    task = _task(stub, mine)
    forged = {
        "empty": b"",
        "truncated": mine.session[: len(mine.session) // 2],
        "one byte": mine.session[:1],
        "extended": mine.session + b"\x00",
        "another client's": other.session,
    }

    for name, session in forged.items():
        bad = pb.Credentials(client_id="c0", session=session)
        for rpc, call in _calls(stub, bad, task.task_id).items():
            code, _ = _refused(call)
            assert code is Code.UNAUTHENTICATED, (name, rpc, code)

    # nothing changed: c0 is still connected and selected, nothing was received from it
    assert "c0" in engine.available_clients(time.monotonic())
    assert "c0" in engine.open_clients()
    assert engine.phase is not Phase.DONE
    np.testing.assert_array_equal(engine.params["w"], MODEL["w"])  # type: ignore[index]
    # its real session still works, and its one result is accepted (not a duplicate)
    assert _task(stub, mine).task_id == task.task_id
    stub.SubmitResult(_messages(mine, task.task_id), timeout=10)
    assert "c0" not in engine.open_clients()


def test_a_result_after_the_deadline_is_refused_because_of_the_deadline(served) -> None:  # type: ignore[no-untyped-def]
    # arrange: a round open until its deadline; the server's ticker then sleeps for an hour,
    # so only the late request itself can see that the deadline passed
    engine = _engine(train=SelectionConfig(count=2, min_results=1), round_timeout_s=1.0)
    now = time.monotonic()
    sessions = {cid: engine.join(cid, now=now) for cid in ("c0", "c1")}
    engine.tick(now)
    assert engine.phase is Phase.TRAINING
    _, stub = served(engine, tick_s=3600.0)
    mine = pb.Credentials(client_id="c0", session=sessions["c0"])
    task = _task(stub, mine)
    time.sleep(max(0.0, now + 1.2 - time.monotonic()))
    assert engine.phase is Phase.TRAINING  # no tick closed the round yet

    # act
    code, details = _refused(lambda: stub.SubmitResult(_messages(mine, task.task_id), timeout=10))

    # assert: refused as late, for the deadline, and the model is the initial one
    assert code is Code.FAILED_PRECONDITION
    assert "deadline passed" in details
    assert engine.phase is Phase.DONE
    (record,) = engine.records
    assert "deadline" in record.reason
    np.testing.assert_array_equal(engine.params["w"], MODEL["w"])  # type: ignore[index]
