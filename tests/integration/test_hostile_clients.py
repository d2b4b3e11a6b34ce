"""Untrusted clients over real gRPC on loopback: garbage, oversized joins and metrics, stalled,
duplicated and over-budget uploads, uploads outliving their round, clients never seen again.

Each test is a regression test for one way a stranger could exhaust or stall the coordinator
(issue 13); docs/reliability.md lists the limits they exercise. The memory floods run against
a `fedcore server` subprocess (plaintext, no token, as the README starts it) and read its own
VmRSS/VmHWM.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedcore.engine import EngineConfig, SelectionConfig
from fedcore.engine.config import Limits
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import coordinator_pb2_grpc as pb_grpc
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.messages import PROTOCOL_VERSION, ResultHeader, Task
from fedcore.protocol.specs import spec_of
from fedcore.transport.grpc.client_connection import GrpcConnection
from fedcore.transport.grpc.coordinator_service import HEALTH_SERVICE, SERVICE_NAME
from fedcore.transport.grpc.server import CoordinatorServer
from fedcore.wire import convert

from .conftest import free_port, wait_until

pytestmark = pytest.mark.timeout(60)
MODEL = {"w": np.zeros(1000, np.float32)}  # 4000 bytes: one chunk (limits.min_chunk_bytes)


def _config(**limits: object) -> EngineConfig:
    return EngineConfig(num_rounds=1, train=SelectionConfig(count=2, min_available=2),
                        evaluate=None, round_timeout_s=30.0, limits=Limits(**limits))  # type: ignore[arg-type]


def _header(conn: GrpcConnection, task_id: str, metrics: dict[str, float] | None = None
            ) -> pb.ResultHeader:
    header = ResultHeader(client_id=conn.client_id, task_id=task_id, num_examples=1,
                          spec=spec_of(MODEL), metrics=metrics or {})
    return convert.result_header_to_proto(header, conn.session)


def _chunk(offset: int, data: bytes) -> pb.ResultChunk:
    return pb.ResultChunk(chunk=tpb.Chunk(offset=offset, data=data))


class HeldStream:
    """A `SubmitResult` call that sends `first`, then waits for `release()` to send `rest`."""

    def __init__(self, stub: pb_grpc.CoordinatorStub, first: list[pb.ResultChunk],
                 rest: list[pb.ResultChunk] = (), timeout: float = 30.0) -> None:  # type: ignore[assignment]
        self._go = threading.Event()
        self.sent = threading.Event()

        def messages() -> Iterator[pb.ResultChunk]:
            yield from first
            self.sent.set()
            self._go.wait(timeout)
            yield from rest

        self.call = stub.SubmitResult.future(messages(), timeout=timeout)

    def release(self) -> None:
        self._go.set()

    def code(self, timeout: float = 20.0) -> grpc.StatusCode:
        try:
            self.call.result(timeout=timeout)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK


@pytest.fixture
def joined(start_coordinator) -> Callable[..., tuple[CoordinatorServer, list[GrpcConnection], Task]]:
    made: list[GrpcConnection] = []
    channels: list[grpc.Channel] = []

    def start(clients: int = 2, **limits: object):
        server = start_coordinator(_config(**limits), {k: v.copy() for k, v in MODEL.items()})
        conns = [GrpcConnection(f"127.0.0.1:{server.port}", client_id=f"c{i}") for i in range(clients)]
        made.extend(conns)
        for conn in conns:
            conn.join()
        tasks = [conn.get_task() for conn in conns]
        assert all(isinstance(t, Task) for t in tasks)
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        channels.append(channel)
        return server, conns, tasks[0], pb_grpc.CoordinatorStub(channel)

    yield start
    for conn in made:
        conn.close()
    for channel in channels:
        channel.close()


# ------------------------------------------------------------------ garbage bytes
GARBAGE = b"\x0a\x10short"  # field 1 announces 16 bytes, 5 follow: no message decodes it


def test_garbage_bytes_to_every_rpc_get_invalid_argument_and_one_log_line(
    start_coordinator, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_coordinator(_config(), MODEL)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        for _ in range(5):
            for name in ("Join", "GetTask", "Leave"):
                with pytest.raises(grpc.RpcError) as err:
                    channel.unary_unary(f"/{SERVICE_NAME}/{name}")(GARBAGE, timeout=10)
                assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, name
                assert f"not a valid {name} message" in err.value.details()
            with pytest.raises(grpc.RpcError) as err:
                list(channel.unary_stream(f"/{SERVICE_NAME}/DownloadModel")(GARBAGE, timeout=10))
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as err:
                channel.stream_unary(f"/{SERVICE_NAME}/SubmitResult")(iter([GARBAGE]), timeout=10)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as err:  # the standard health service too
                channel.unary_unary(f"/{HEALTH_SERVICE}/Check")(GARBAGE, timeout=10)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as err:
                list(channel.unary_stream(f"/{HEALTH_SERVICE}/Watch")(GARBAGE, timeout=10))
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    malformed = [r for r in caplog.records if "malformed request" in r.getMessage()]
    per_interval = 1 + int((time.monotonic() - started) // 10)  # one line per 10 s at most
    assert 1 <= len(malformed) <= per_interval, [r.getMessage() for r in malformed]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:  # health still answers
        reply = channel.unary_unary(f"/{HEALTH_SERVICE}/Check")(b"", timeout=10)
    assert reply == b"\x08\x01"  # HealthCheckResponse(status=SERVING)
    assert server.engine.available_clients(time.monotonic()) == []


# ------------------------------------------------------------------ joins and metrics
@pytest.mark.parametrize("client_id, properties, words", [
    ("c" * 65, {}, "client_id"),
    ("ok", {f"k{i}": "v" for i in range(5)}, "limits.max_properties"),
    ("ok", {"k": "v" * 200}, "limits.max_properties_bytes"),
])
def test_joins_beyond_the_limits_are_refused_and_nothing_is_kept(
    start_coordinator, client_id: str, properties: dict[str, str], words: str
) -> None:
    server = start_coordinator(_config(max_client_id_chars=64, max_properties=4,
                                       max_properties_bytes=128), MODEL)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Join(pb.JoinRequest(client_id=client_id, protocol_version=PROTOCOL_VERSION,
                                     properties=properties), timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words in err.value.details()
    assert server.engine.available_clients(time.monotonic()) == []


def test_joins_beyond_max_clients_are_refused(start_coordinator) -> None:
    server = start_coordinator(_config(max_clients=2), MODEL)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        for name in ("a", "b", "a"):  # joining again under a registered id is not a new client
            stub.Join(pb.JoinRequest(client_id=name, protocol_version=PROTOCOL_VERSION), timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.Join(pb.JoinRequest(client_id="c", protocol_version=PROTOCOL_VERSION), timeout=10)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limits.max_clients" in err.value.details()


@pytest.mark.parametrize("metrics, words", [
    ({f"m{i}": 1.0 for i in range(9)}, "limits.max_metrics"),
    ({"m" * 17: 1.0}, "limits.max_metric_key_chars"),
])
def test_metrics_beyond_the_limits_are_refused(joined, metrics: dict[str, float], words: str) -> None:
    server, conns, task, stub = joined(max_metrics=8, max_metric_key_chars=16)
    data = np.ones(1000, np.float32).tobytes()
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitResult(iter([pb.ResultChunk(header=_header(conns[0], task.task_id, metrics)),
                                _chunk(0, data)]), timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert words in err.value.details()
    assert server.service is not None and server.service.uploads.reserved == 0


# ------------------------------------------------------------------ uploads
def test_a_stream_that_sends_nothing_is_aborted_after_the_idle_deadline(joined) -> None:
    server, conns, task, stub = joined(upload_idle_s=0.3)
    silent = HeldStream(stub, [])  # not even a header
    stalled = HeldStream(stub, [pb.ResultChunk(header=_header(conns[0], task.task_id))])
    try:
        assert silent.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert stalled.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        silent.release()
        stalled.release()
    assert "upload_idle_s" in stalled.call.exception().details()
    assert server.service is not None and server.service.uploads.reserved == 0
    # the client can still send its result afterwards
    stub.SubmitResult(iter([pb.ResultChunk(header=_header(conns[0], task.task_id)),
                            _chunk(0, np.ones(1000, np.float32).tobytes())]), timeout=10)


def test_empty_chunks_are_refused_at_once(joined) -> None:
    _, conns, task, stub = joined()

    def endless() -> Iterator[pb.ResultChunk]:
        yield pb.ResultChunk(header=_header(conns[0], task.task_id))
        for _ in range(100_000):  # refused at the first: the server never reads this far
            yield _chunk(0, b"")

    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitResult(endless(), timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "empty chunk" in err.value.details()


def test_many_small_chunks_are_refused(joined) -> None:
    _, conns, task, stub = joined()
    data = np.ones(1000, np.float32).tobytes()
    parts = [_chunk(i, data[i:i + 1]) for i in range(len(data))]  # 4000 one-byte chunks
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitResult(iter([pb.ResultChunk(header=_header(conns[0], task.task_id)), *parts]),
                          timeout=10)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "limits.min_chunk_bytes" in err.value.details()


def test_one_upload_per_client_and_task(joined) -> None:
    server, conns, task, stub = joined()
    data = np.ones(1000, np.float32).tobytes()
    first = HeldStream(stub, [pb.ResultChunk(header=_header(conns[0], task.task_id))],
                       [_chunk(0, data)])
    try:
        assert first.sent.wait(10)
        assert server.service is not None
        wait_until(lambda: server.service.uploads.reserved == 4000, timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitResult(iter([pb.ResultChunk(header=_header(conns[0], task.task_id)),
                                    _chunk(0, data)]), timeout=10)
        assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    finally:
        first.release()
    assert first.code() is grpc.StatusCode.OK  # the first upload was not disturbed
    assert server.service.uploads.reserved == 0


def test_uploads_beyond_the_budget_are_refused_until_it_frees(joined) -> None:
    server, conns, task, stub = joined(upload_budget_mb=6000 / (1 << 20))  # room for one
    data = np.ones(1000, np.float32).tobytes()
    first = HeldStream(stub, [pb.ResultChunk(header=_header(conns[0], task.task_id))],
                       [_chunk(0, data)])
    try:
        assert server.service is not None
        wait_until(lambda: server.service.uploads.reserved == 4000, timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitResult(iter([pb.ResultChunk(header=_header(conns[1], task.task_id)),
                                    _chunk(0, data)]), timeout=10)
        assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "try again later" in err.value.details()
    finally:
        first.release()
    assert first.code() is grpc.StatusCode.OK
    assert server.service.uploads.reserved == 0
    stub.SubmitResult(iter([pb.ResultChunk(header=_header(conns[1], task.task_id)),
                            _chunk(0, data)]), timeout=10)  # the budget is free again
    assert server.wait(10)
    assert server.engine.records[0].results_received == 2


def test_a_payload_larger_than_the_whole_budget_names_the_limit(joined) -> None:
    _, conns, task, stub = joined(upload_budget_mb=1000 / (1 << 20))
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitResult(iter([pb.ResultChunk(header=_header(conns[0], task.task_id))]),
                          timeout=10)
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limits.upload_budget_mb" in err.value.details()


def test_an_upload_ends_when_its_round_closes(start_coordinator) -> None:
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None,
                          round_timeout_s=1.0)
    server = start_coordinator(config, MODEL)
    conn = GrpcConnection(f"127.0.0.1:{server.port}", client_id="slow")
    conn.join()
    task = conn.get_task()
    assert isinstance(task, Task)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        upload = HeldStream(stub, [pb.ResultChunk(header=_header(conn, task.task_id))])
        try:  # idle deadline 30 s by default: only the round's close can end it this soon
            assert upload.code(timeout=10) is grpc.StatusCode.FAILED_PRECONDITION
        finally:
            upload.release()
    assert "closed" in upload.call.exception().details()  # its task (the round) closed
    assert server.service is not None and server.service.uploads.reserved == 0
    conn.close()


# ------------------------------------------------------------------ downloads
def test_downloads_come_one_at_a_time_per_client_and_task(start_coordinator) -> None:
    big = {"w": np.zeros(4 << 20, np.float32)}  # 16 MiB: more than the transport buffers
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None)
    server = start_coordinator(config, big)
    conn = GrpcConnection(f"127.0.0.1:{server.port}", client_id="reader")
    conn.join()
    task = conn.get_task()
    assert isinstance(task, Task)
    request = pb.DownloadRequest(credentials=pb.Credentials(client_id="reader", session=conn.session),
                                 task_id=task.task_id)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        stalled = stub.DownloadModel(request, timeout=30)  # not read
        assert server.service is not None
        wait_until(lambda: ("reader", task.task_id) in server.service.downloads, timeout=10)
        for _ in range(5):
            with pytest.raises(grpc.RpcError) as err:
                list(stub.DownloadModel(request, timeout=10))
            assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
        stalled.cancel()
        wait_until(lambda: server.service.downloads == frozenset(), timeout=10)
    np.testing.assert_array_equal(conn.download(task)["w"], big["w"])  # then it is served
    conn.close()


# ------------------------------------------------------------------ long-polls
def test_one_long_poll_per_client_is_held_and_others_are_answered_at_once(start_coordinator) -> None:
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1, min_available=2),
                          evaluate=None)  # one client: no round opens, polls are held
    server = start_coordinator(config, MODEL)  # long_poll_s = 1 s (conftest)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        session = stub.Join(pb.JoinRequest(client_id="eager", protocol_version=PROTOCOL_VERSION),
                            timeout=10).session
        request = pb.TaskRequest(credentials=pb.Credentials(client_id="eager", session=session))
        held = stub.GetTask.future(request, timeout=10)
        assert server.service is not None
        wait_until(lambda: "eager" in server.service.held_polls, timeout=10)
        for _ in range(20):  # each answered while the first is still held
            reply = stub.GetTask(request, timeout=10)
            assert reply.WhichOneof("reply") == "wait" and reply.wait.retry_after_s > 0
        still_held = not held.done()
        assert held.result(timeout=10).WhichOneof("reply") == "wait"
    assert still_held


# ------------------------------------------------------------------ eviction
def test_clients_not_seen_for_the_eviction_time_are_forgotten(start_coordinator) -> None:
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1, min_available=2),
                          evaluate=None, client_timeout_s=0.2, limits=Limits(client_evict_s=0.3))
    server = start_coordinator(config, MODEL)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        session = stub.Join(pb.JoinRequest(client_id="ghost", protocol_version=PROTOCOL_VERSION),
                            timeout=10).session
        credentials = pb.Credentials(client_id="ghost", session=session)
        time.sleep(0.6)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetTask(pb.TaskRequest(credentials=credentials), timeout=10)
    assert err.value.code() is grpc.StatusCode.NOT_FOUND  # the client must join again


# ------------------------------------------------------------------ memory, in its own process
UPLOAD_MB = 40  # above glibc's largest mmap threshold (32 MiB): a freed buffer leaves the RSS
SENT_MB = 24


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of process `pid`, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _partial_upload(stub, conn: GrpcConnection, task_id: str, tail: list[pb.ResultChunk],
                    hold: threading.Event | None = None) -> grpc.Future:
    """An upload of SENT_MB of the UPLOAD_MB announced, then `tail`, then (optionally) silence."""
    header = convert.result_header_to_proto(
        ResultHeader(client_id=conn.client_id, task_id=task_id, num_examples=1,
                     spec=spec_of({"w": np.zeros(UPLOAD_MB << 18, np.float32)})), conn.session)
    block = b"\1" * (1 << 20)

    def messages() -> Iterator[pb.ResultChunk]:
        yield pb.ResultChunk(header=header)
        for i in range(SENT_MB):
            yield _chunk(i << 20, block)
        yield from tail
        if hold is not None:
            hold.wait(30)

    return stub.SubmitResult.future(messages(), timeout=30)


def _code(future: grpc.Future) -> grpc.StatusCode:
    try:
        future.result(timeout=30)
    except grpc.FutureCancelledError:
        return grpc.StatusCode.CANCELLED
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.timeout(120)
def test_floods_leave_the_coordinator_memory_bounded(tmp_path: Path) -> None:
    np.savez(tmp_path / "model.npz", w=np.zeros(UPLOAD_MB << 18, np.float32))
    port = free_port()
    (tmp_path / "server.toml").write_text(f"""
[server]
address = "127.0.0.1:{port}"
out_dir = "{tmp_path / 'run'}"
initial_model = "{tmp_path / 'model.npz'}"
run_store = ""
checkpoint = false
[rounds]
num_rounds = 3
clients_per_round = 1
round_timeout_s = 600.0
eval_fraction = 0.0
[limits]
upload_budget_mb = 64.0
upload_idle_s = 1.0
""")
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from fedcore.cli import main; sys.exit(main())",
         "server", "--config", str(tmp_path / "server.toml")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    hold = threading.Event()
    try:
        conn = GrpcConnection(f"127.0.0.1:{port}", client_id="mallory")
        wait_until(lambda: _joins(conn), timeout=90)
        task = conn.get_task()
        assert isinstance(task, Task)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                        options=[("grpc.max_send_message_length", 16 << 20)])
        stub = pb_grpc.CoordinatorStub(channel)
        base_rss, _ = _memory_mb(server.pid)

        # 1. joins carrying ~5 MB of properties each: refused before anything is kept
        for i in range(30):
            with pytest.raises(grpc.RpcError) as err:
                stub.Join(pb.JoinRequest(client_id=f"sybil-{i}", protocol_version=PROTOCOL_VERSION,
                                         properties={f"k{j}": "x" * 50_000 for j in range(100)}),
                          timeout=30)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # 2. three concurrent uploads for one task, the first stalled: one admitted, aborted idle
        for _ in range(3):
            calls = [_partial_upload(stub, conn, task.task_id, [], hold) for _ in range(3)]
            codes = sorted(_code(c).name for c in calls)
            assert codes == ["ALREADY_EXISTS", "ALREADY_EXISTS", "DEADLINE_EXCEEDED"], codes
        # 3. uploads abandoned by the client half way
        for _ in range(3):
            call = _partial_upload(stub, conn, task.task_id, [], hold)
            time.sleep(0.3)
            call.cancel()
            assert _code(call) is grpc.StatusCode.CANCELLED
        # 4. incomplete uploads refused (a chunk at the wrong offset), which used to stay
        #    until a cyclic garbage collection
        for _ in range(10):
            call = _partial_upload(stub, conn, task.task_id, [_chunk(1, b"\0" * 4096)])
            assert _code(call) is grpc.StatusCode.INVALID_ARGUMENT
        # 5. endless empty chunks: refused at the first
        call = _partial_upload(stub, conn, task.task_id, [_chunk(SENT_MB << 20, b"")] * 10_000)
        assert _code(call) is grpc.StatusCode.INVALID_ARGUMENT

        wait_until(lambda: _memory_mb(server.pid)[0] - base_rss < 50, timeout=20)
        _, peak = _memory_mb(server.pid)
        assert peak - base_rss <= 300, (base_rss, peak)
        assert server.poll() is None
        channel.close()
        conn.close()
    finally:
        hold.set()
        server.kill()
        out, _ = server.communicate()
    assert "Traceback" not in out, out[-3000:]


def _joins(conn: GrpcConnection) -> bool:
    try:
        conn.join()
    except Exception:  # noqa: BLE001 - not serving yet
        time.sleep(0.2)
        return False
    return True
