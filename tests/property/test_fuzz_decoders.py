"""Fuzzing (bounded): every decoder of untrusted bytes returns a valid value or raises its
documented error, never another exception; and every RPC of a live coordinator answers bytes
that are not its request with a status code, never UNKNOWN or INTERNAL.

The decoders and their documented errors are `benchmarks.fuzz.TARGETS`; `python -m
benchmarks.fuzz` runs the same targets with many more inputs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import fuzz
from fedcore.config import load_config
from fedcore.config.tables import ConfigError
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.messages import PROTOCOL_VERSION
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

EXAMPLES = 50


@pytest.mark.parametrize("target", fuzz.TARGETS, ids=lambda t: t.name)
def test_decoder_returns_a_value_or_raises_its_documented_error(target: fuzz.Target) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(target.inputs)
    def run(value: object) -> None:
        fuzz.check(target, value)

    run()


def test_the_harness_reports_an_undocumented_exception() -> None:
    # a decoder that raises KeyError where it documents ValueError is a failure
    def broken(raw: bytes) -> object:
        return {}[raw] if raw else None

    target = fuzz.Target("broken", st.binary(max_size=4), broken, (ValueError,))

    outcome = fuzz.fuzz(target, 20)

    assert "raised KeyError" in outcome.failure and outcome.inputs >= 1


# Found by fuzzing `fedcore.config.load_config` (regressions):
def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.toml"
    path.write_bytes(b"\x80[rounds]\n")

    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path)


def test_an_override_into_a_key_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    # `rounds = 3` at the top of the file, then `--rounds 5` (the override rounds.num_rounds)
    path = tmp_path / "coordinator.toml"
    path.write_text("rounds = 3\n")

    with pytest.raises(ConfigError, match="rounds must be a table"):
        load_config(path, {"rounds.num_rounds": 5})


# ----------------------------------------------------------------------------- gRPC handlers
METHODS = {
    "Join": ("unary_unary", pb.JoinRequest(client_id="fuzz-1", protocol_version=PROTOCOL_VERSION)),
    "GetTask": ("unary_unary", pb.TaskRequest(credentials=pb.Credentials(client_id="fuzz-1"))),
    "DownloadModel": ("unary_stream", pb.DownloadRequest(task_id="t")),
    "SubmitResult": ("stream_unary", pb.ResultChunk(chunk=tpb.Chunk(offset=0, data=b"x"))),
    "Leave": ("unary_unary", pb.LeaveRequest()),
}
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNIMPLEMENTED}


@pytest.fixture(scope="module")
def coordinator() -> Iterator[grpc.Channel]:
    engine = RoundEngine(
        EngineConfig(num_rounds=1, train=SelectionConfig(count=2, min_available=2, min_results=2),
                     evaluate=None),
        FedAvg(), initial_params={"w": np.zeros(4, np.float32)})
    server = CoordinatorServer(engine, long_poll_s=0.1, linger_s=0.1)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop()


def _call(channel: grpc.Channel, method: str, messages: list[bytes]) -> grpc.StatusCode:
    kind, _ = METHODS[method]
    path = f"/fedcore.v1.Coordinator/{method}"
    ident = (lambda b: b)
    stub = getattr(channel, kind)(path, request_serializer=ident, response_deserializer=ident)
    try:
        if kind == "unary_unary":
            stub(messages[0], timeout=10)
        elif kind == "unary_stream":
            list(stub(messages[0], timeout=10))
        else:
            stub(iter(messages), timeout=10)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", list(METHODS))
def test_garbage_bytes_to_an_rpc_get_a_status_never_unknown(
    coordinator: grpc.Channel, method: str
) -> None:
    seed = METHODS[method][1].SerializeToString()

    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(fuzz.mutated(seed, max_size=200), min_size=1, max_size=3))
    def run(messages: list[bytes]) -> None:
        code = _call(coordinator, method, messages)
        assert code not in FORBIDDEN, f"{method} answered {code.name} to {messages!r}"

    run()
    # the coordinator still serves: a proper Join is admitted
    join = pb.JoinRequest(client_id=f"after-{method}", protocol_version=PROTOCOL_VERSION)
    assert _call(coordinator, "Join", [join.SerializeToString()]) is grpc.StatusCode.OK


def test_bytes_that_are_no_protobuf_get_invalid_argument(coordinator: grpc.Channel) -> None:
    garbage = b"\xff\xff\xff\xff\x0f"  # a truncated varint: no message of any type

    codes = {m: _call(coordinator, m, [garbage]) for m in METHODS}

    assert codes == dict.fromkeys(METHODS, grpc.StatusCode.INVALID_ARGUMENT)
