"""Fuzzing every decoder of untrusted bytes: each returns a valid value or raises its documented
error type, never another exception.

`python -m benchmarks.fuzz [--examples 500] [--only NAME]` prints one JSON line: the inputs
fuzzed per decoder (`decoded`: a value came back, `refused`: the documented error, `skipped`:
protobuf refused the bytes before any fedcore code ran, or a valid layout too large to
allocate; `reached_decoders` sums the first two), and the failures (a decoder raising
anything but its documented errors, or returning an invalid value), each with the smallest
input hypothesis found.

The targets (`TARGETS`) are also run, with few examples each, by the regular suite
(tests/property/test_fuzz_decoders.py). Inputs are random bytes and, mostly, valid encodings
mutated (bytes flipped, cut, inserted, repeated), so that fuzzing reaches past the first
length check. Decoders and their documented errors:

- `fedcore.wire.tensor`: `decode` and `PayloadAssembler` (specs from the wire): `WireError`
  (`PayloadTooLarge` is one);
- `fedcore.wire.convert`: every `*_from_proto` of a message a peer sends: `WireError`;
- `fedcore.wire.secagg`: `server_step_from_proto`, `client_message_from_proto` and
  `with_payload`: `WireError`; a fresh `SecAggServer` handed what they decode: `ProtocolError`;
- `fedcore.secagg`: `shamir.decode_shares`, `packing.unpack`, `keys.decrypt_share`: `SecAggError`;
- `fedcore.transport.grpc.chunks.read_result_chunk` (the coordinator's upload reader):
  protobuf's `DecodeError`;
- `fedcore.engine.checkpoint.checkpoint_from_bytes`: `CheckpointError`;
- `fedcore.secagg.roster.Roster.from_json`: `RosterError`;
- `fedcore.config.load_config` (a TOML file, and dotted-key overrides) and
  `fedcore.sim.config.load_simulation_config`: `ConfigError`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedcore.config import load_config
from fedcore.config.tables import ConfigError
from fedcore.engine.checkpoint import CheckpointError, checkpoint_from_bytes, checkpoint_to_bytes
from fedcore.engine.records import RoundRecord, RoundStatus
from fedcore.engine.snapshot import EngineSnapshot
from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import secagg_pb2 as spb
from fedcore.proto.v1 import tensor_pb2 as tpb
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import (
    Done,
    ResultHeader,
    Task,
    TaskKind,
    TrainConfig,
    Wait,
)
from fedcore.protocol.specs import ModelSpec, TensorSpec
from fedcore.secagg import keys as secagg_keys
from fedcore.secagg import packing, shamir
from fedcore.secagg.config import RoundSpec, SecAggConfig
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.roster import Roster, RosterError
from fedcore.secagg.server import SecAggServer
from fedcore.sim.config import load_simulation_config
from fedcore.transport.grpc.chunks import read_result_chunk
from fedcore.wire import convert
from fedcore.wire import secagg as wire_secagg
from fedcore.wire.tensor import PayloadAssembler, decode, encode


class Skip(Exception):
    """The input never reaches the decoder (e.g. bytes protobuf itself refuses first)."""


@dataclass(frozen=True, slots=True)
class Target:
    """One decoder under fuzzing: inputs, the call, and the errors it documents."""

    name: str
    inputs: st.SearchStrategy[Any]
    run: Callable[[Any], object]
    allowed: tuple[type[BaseException], ...]


# ----------------------------------------------------------------------------- inputs
def _mutate(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """`seed` with `edits` applied: (0, at, b) overwrite, (1, at, b) insert, (2, at, _) cut
    the tail, (3, at, _) repeat a slice."""
    data = bytearray(seed)
    for op, at, blob in edits:
        at = at % (len(data) + 1)
        if op == 0:
            data[at : at + len(blob)] = blob
        elif op == 1:
            data[at:at] = blob
        elif op == 2:
            del data[at:]
        else:
            data[at:at] = data[at : at + 1 + len(blob) * 8]
    return bytes(data)


def mutated(*seeds: bytes, max_size: int = 512) -> st.SearchStrategy[bytes]:
    """Random bytes, and (three times as often) `seeds` with a few random edits."""
    edit = st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8))
    edited = st.builds(_mutate, st.sampled_from(seeds), st.lists(edit, min_size=1, max_size=4))
    return st.one_of(st.binary(max_size=max_size), edited, edited, edited)


_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_DOUBLE: st.floats(), FD.TYPE_FLOAT: st.floats(width=32),
    FD.TYPE_INT64: st.integers(-(2**63), 2**63 - 1), FD.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 300)),
    FD.TYPE_INT32: st.integers(-(2**31), 2**31 - 1), FD.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 40)),
    FD.TYPE_BOOL: st.booleans(), FD.TYPE_STRING: st.text(max_size=12),
    FD.TYPE_BYTES: st.binary(max_size=40), FD.TYPE_ENUM: st.integers(-2, 16),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_MESSAGE:
        return _message(field.message_type, depth + 1)
    return _SCALARS.get(field.type, st.none())


@st.composite
def _message(draw: st.DrawFn, descriptor: Any, depth: int = 0) -> Message:
    """A message of `descriptor` with random values in random fields (nested 3 deep)."""
    msg = GetMessageClass(descriptor)()
    if depth > 3:
        return msg
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_f, value_f = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            entries = draw(st.dictionaries(_value(key_f, depth), _value(value_f, depth), max_size=3))
            target = getattr(msg, field.name)
            for k, v in entries.items():
                if value_f.type == FD.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            items = draw(st.lists(_value(field, depth), max_size=3))
            target = getattr(msg, field.name)
            if field.type == FD.TYPE_MESSAGE:
                for item in items:
                    target.add().CopyFrom(item)
            else:
                target.extend(items)
        elif field.type == FD.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(draw(_value(field, depth)))
        else:
            setattr(msg, field.name, draw(_value(field, depth)))
    return msg


def structured(cls: type[Message]) -> st.SearchStrategy[bytes]:
    """Serialised `cls` messages with random values in random fields (structure-aware)."""
    return _message(cls.DESCRIPTOR).map(lambda m: m.SerializeToString())


def wire(cls: type[Message], *seeds: bytes, max_size: int = 512) -> st.SearchStrategy[bytes]:
    """Bytes for a decoder of `cls`: structured messages and mutated `seeds`, half and half."""
    return st.one_of(structured(cls), mutated(*seeds, max_size=max_size))


def _proto(cls: type[Message], raw: bytes) -> Any:
    try:
        return cls.FromString(raw)
    except DecodeError:
        raise Skip from None  # protobuf refuses it before any fedcore code runs


# ----------------------------------------------------------------------------- seeds
_SPEC = ModelSpec(tensors=(TensorSpec("w", np.dtype("float32"), (3, 4)),
                           TensorSpec("b", np.dtype("int64"), (2,))))
_SPEC_PB = convert.spec_to_proto(_SPEC).SerializeToString()
_TRAIN = TrainConfig(local_epochs=2, batch_size=8, learning_rate=0.1)
_TASK_PB = convert.task_reply_to_proto(
    Task(round=3, task_id="t-3", kind=TaskKind.TRAIN, train=_TRAIN, time_left_s=9.0,
         model_spec=_SPEC)).SerializeToString()
_WAIT_PB = convert.task_reply_to_proto(Wait(retry_after_s=1.5, reason="full")).SerializeToString()
_DONE_PB = convert.task_reply_to_proto(Done(reason="over")).SerializeToString()
_HEADER_PB = convert.result_header_to_proto(ResultHeader(
    client_id="c1", task_id="t-3", num_examples=10, metrics={"loss": 0.5}, spec=_SPEC),
    session=b"s" * 16).SerializeToString()
_JOIN_PB = pb.JoinReply(session=b"s" * 16, client_timeout_s=60, long_poll_s=5,
                        limits=pb.Limits(max_message_bytes=1 << 22, chunk_bytes=1 << 20,
                                         max_metrics=64)).SerializeToString()
_SUBMIT_PB = pb.SubmitReply(message="accepted", retry_after_s=0.5).SerializeToString()
_CHUNK_PB = pb.ResultChunk(chunk=tpb.Chunk(offset=12, data=b"x" * 40)).SerializeToString()
_RESULT_HEAD_PB = pb.ResultChunk(header=pb.ResultHeader.FromString(_HEADER_PB)).SerializeToString()

_ROUND = RoundSpec(config=SecAggConfig(threshold=2, max_clients=3, clip=1.0, bit_width=32),
                   round_id=1, num_clients=3, dim=5)
_ADVERT = spb.SecAggClientMessage(advertise_keys=spb.AdvertiseKeys(
    sender=1, cipher_pk=b"c" * 32, mask_pk=b"m" * 32, seed_commitment=b"s" * 32))
_SHARES = spb.SecAggClientMessage(encrypted_shares=spb.EncryptedShares(
    sender=2, shares=[spb.SealedShare(receiver=1, ciphertext=b"x" * 60)]))
_UNMASK = spb.SecAggClientMessage(unmask_shares=spb.UnmaskShares(
    sender=1, seed_shares=[spb.OwnedShare(owner=2, share=b"y" * 32)]))
_MASKED = spb.SecAggClientMessage(masked_input=spb.MaskedInputHeader(sender=3))
_CLIENT_SEEDS = tuple(m.SerializeToString() for m in (_ADVERT, _SHARES, _UNMASK, _MASKED))
_SETUP_PB = wire_secagg.server_step_to_proto(
    wire_secagg.SecAggSetup(client=1, spec=_ROUND, weight_cap=100.0)).SerializeToString()

_CHECKPOINT = checkpoint_to_bytes(EngineSnapshot(
    round=2, task_seq=3, params={"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
    records=[RoundRecord(round=r, status=RoundStatus.OK, clients_selected=3,
                         results_received=3, train_loss=0.1, loss=None, accuracy=None,
                         eval_clients=0, duration_s=0.5) for r in (1, 2)]))
_ROSTER = Roster({"site-a": b"a" * 32, "site-b": b"b" * 32}).to_json().encode()

_CONFIG_TOML = b"""[server]
address = "127.0.0.1:8080"
checkpoint = true

[rounds]
num_rounds = 5
min_available = 2
min_results = 2
round_timeout_s = 30.0

[strategy]
name = "fedavg"
local_epochs = 1
learning_rate = 0.05

[secagg]
enabled = true
mode = "full"
clip = 2.0
"""
_SIM_TOML = b"""[simulation]
clients = 10

[rounds]
num_rounds = 2
"""
_CONFIG_KEYS = ("rounds.num_rounds", "rounds.min_results", "rounds.min_available",
                "rounds.fraction", "rounds.clients_per_round", "rounds.round_timeout_s",
                "rounds.eval_every", "strategy.name", "strategy.learning_rate",
                "strategy.local_epochs", "strategy.proximal_mu", "secagg.enabled",
                "secagg.mode", "secagg.clip", "secagg.bit_width", "secagg.threshold_fraction",
                "secagg.phase_timeout_s", "privacy.local.noise_multiplier",
                "privacy.user.noise_multiplier", "server.max_payload_mb", "server.address",
                "rounds", "secagg", "nonsense.key", "rounds.unknown")
_VALUES = st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(),
                    st.text(max_size=20), st.lists(st.integers(), max_size=3),
                    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


# ----------------------------------------------------------------------------- targets
def _tensor_decode(args: tuple[bytes, bytes]) -> object:
    spec = convert.spec_from_proto(_proto(tpb.ModelSpec, args[0]))
    if spec.nbytes > 1 << 20:
        raise Skip  # a valid but large layout: the decoder would only allocate
    out = decode(spec, args[1])
    assert [(k, v.dtype, v.shape) for k, v in out.items()] == [
        (t.name, t.dtype, t.shape) for t in spec.tensors]
    return out


def _assemble(args: tuple[bytes, list[tuple[int, bytes]], int]) -> object:
    spec = convert.spec_from_proto(_proto(tpb.ModelSpec, args[0]))
    if spec.nbytes > 1 << 20:
        raise Skip
    assembler = PayloadAssembler(spec, max_bytes=args[2])
    for offset, data in args[1]:
        assembler.add(offset, data)
    out = assembler.finish()
    assert encode(out) == b"".join(data for _, data in args[1])
    return out


def _from_proto(cls: type[Message], convert_fn: Callable[[Any], object]) -> Callable[[bytes], object]:
    return lambda raw: convert_fn(_proto(cls, raw))


def _client_message(raw: bytes) -> object:
    msg = wire_secagg.client_message_from_proto(_proto(spb.SecAggClientMessage, raw))
    spec = wire_secagg.masked_payload_spec(msg, dim=_ROUND.dim, bit_width=32)
    return wire_secagg.with_payload(msg, {t.name: np.zeros(t.shape, t.dtype) for t in spec.tensors})


def _secagg_server(raw: bytes) -> object:
    msg = wire_secagg.client_message_from_proto(_proto(spb.SecAggClientMessage, raw))
    return SecAggServer(_ROUND).handle(msg)


def _unpack(args: tuple[bytes, int, int]) -> object:
    data, bit_width, dim = args
    words = packing.unpack(data, bit_width, dim)
    assert words.shape == (dim,)
    return words


def _decrypt(args: tuple[bytes, bytes]) -> object:
    return secagg_keys.decrypt_share(args[0], args[1], round_id=1, graph_seed=bytes(32),
                                     sender=1, receiver=2)


def _read_chunk(raw: bytes) -> object:
    part = read_result_chunk(raw)
    assert (part.header is None) or (part.data is None)
    return part


def _config_file(raw: bytes, loader: Callable[[Path], object]) -> object:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_bytes(raw)
        return loader(path)


TARGETS: tuple[Target, ...] = (
    Target("wire.tensor.decode", st.tuples(wire(tpb.ModelSpec, _SPEC_PB, max_size=64),
                                           mutated(bytes(56), max_size=128)),
           _tensor_decode, (WireError,)),
    Target("wire.tensor.PayloadAssembler",
           st.tuples(wire(tpb.ModelSpec, _SPEC_PB, max_size=64),
                     st.lists(st.tuples(st.integers(0, 80), st.binary(max_size=60)), max_size=4),
                     st.integers(0, 100)),
           _assemble, (WireError,)),
    Target("wire.convert.spec_from_proto", wire(tpb.ModelSpec, _SPEC_PB),
           _from_proto(tpb.ModelSpec, convert.spec_from_proto), (WireError,)),
    Target("wire.convert.task_reply_from_proto", wire(pb.TaskReply, _TASK_PB, _WAIT_PB, _DONE_PB),
           _from_proto(pb.TaskReply, convert.task_reply_from_proto), (WireError,)),
    Target("wire.convert.train_config_from_proto",
           wire(pb.TrainConfig, pb.TaskReply.FromString(_TASK_PB).task.train.SerializeToString()),
           _from_proto(pb.TrainConfig, convert.train_config_from_proto), (WireError,)),
    Target("wire.convert.join_reply_from_proto", wire(pb.JoinReply, _JOIN_PB),
           _from_proto(pb.JoinReply, convert.join_reply_from_proto), (WireError,)),
    Target("wire.convert.submit_reply_from_proto", wire(pb.SubmitReply, _SUBMIT_PB),
           _from_proto(pb.SubmitReply, convert.submit_reply_from_proto), (WireError,)),
    Target("wire.convert.result_header_from_proto", wire(pb.ResultHeader, _HEADER_PB),
           _from_proto(pb.ResultHeader, convert.result_header_from_proto), (WireError,)),
    Target("wire.secagg.server_step_from_proto", wire(spb.SecAggServerMessage, _SETUP_PB),
           _from_proto(spb.SecAggServerMessage, wire_secagg.server_step_from_proto), (WireError,)),
    Target("wire.secagg.client_message_from_proto", wire(spb.SecAggClientMessage, *_CLIENT_SEEDS),
           _client_message, (WireError,)),
    Target("secagg.SecAggServer.handle", wire(spb.SecAggClientMessage, *_CLIENT_SEEDS), _secagg_server,
           (WireError, SecAggError)),
    Target("secagg.shamir.decode_shares",
           st.lists(mutated(shamir.encode_share(np.arange(8, dtype=np.uint64)), max_size=40),
                    max_size=3),
           lambda blobs: shamir.decode_shares(blobs), (SecAggError,)),
    Target("secagg.packing.unpack",
           st.tuples(mutated(bytes(20), max_size=40), st.sampled_from([1, 7, 8, 16, 20, 32, 64]),
                     st.integers(0, 40)),
           _unpack, (SecAggError,)),
    Target("secagg.keys.decrypt_share",
           st.tuples(st.binary(min_size=32, max_size=32), mutated(bytes(48), max_size=80)),
           _decrypt, (SecAggError,)),
    Target("transport.chunks.read_result_chunk", wire(pb.ResultChunk, _CHUNK_PB, _RESULT_HEAD_PB),
           _read_chunk, (DecodeError,)),
    Target("engine.checkpoint_from_bytes", mutated(_CHECKPOINT, max_size=256),
           checkpoint_from_bytes, (CheckpointError,)),
    Target("secagg.Roster.from_json", mutated(_ROSTER).map(lambda b: b.decode("utf-8", "replace")),
           Roster.from_json, (RosterError,)),
    Target("config.load_config(file)", mutated(_CONFIG_TOML),
           lambda raw: _config_file(raw, load_config), (ConfigError,)),
    Target("config.load_config(overrides)",
           st.dictionaries(st.sampled_from(_CONFIG_KEYS), _VALUES, max_size=4),
           lambda overrides: load_config(None, overrides), (ConfigError,)),
    Target("sim.load_simulation_config", mutated(_SIM_TOML),
           lambda raw: _config_file(raw, load_simulation_config), (ConfigError,)),
)


# ----------------------------------------------------------------------------- running
@dataclass(slots=True)
class Outcome:
    """What fuzzing one target found."""

    inputs: int = 0
    decoded: int = 0
    refused: int = 0
    skipped: int = 0
    failure: str = ""


def check(target: Target, value: Any, outcome: Outcome | None = None) -> None:
    """Feed `value` to `target`; raise AssertionError if it fails in an undocumented way."""
    if outcome is not None:
        outcome.inputs += 1
    try:
        target.run(value)
    except Skip:
        if outcome is not None:
            outcome.skipped += 1
    except target.allowed:
        if outcome is not None:
            outcome.refused += 1
    except Exception as err:
        raise AssertionError(f"{target.name} raised {type(err).__name__}: {err}"[:400]) from err
    else:
        if outcome is not None:
            outcome.decoded += 1


def fuzz(target: Target, examples: int) -> Outcome:
    """Run `examples` hypothesis inputs through `target` (no example database)."""
    outcome = Outcome()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(target.inputs)
    def run(value: Any) -> None:
        check(target, value, outcome)

    try:
        run()
    except AssertionError as err:
        outcome.failure = str(err)[:600]
    return outcome


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=500, help="inputs per decoder")
    p.add_argument("--only", help="fuzz only the targets whose name contains this")
    args = p.parse_args(argv)
    started = time.perf_counter()
    outcomes = {t.name: fuzz(t, args.examples) for t in TARGETS
                if not args.only or args.only in t.name}
    failures = {name: o.failure for name, o in outcomes.items() if o.failure}
    print(json.dumps({
        "examples_per_decoder": args.examples,
        "decoders": len(outcomes),
        "inputs_total": sum(o.inputs for o in outcomes.values()),
        "inputs": {name: o.inputs for name, o in outcomes.items()},
        "decoded": {name: o.decoded for name, o in outcomes.items()},
        "refused": {name: o.refused for name, o in outcomes.items()},
        "skipped": {name: o.skipped for name, o in outcomes.items()},
        "reached_decoders": sum(o.decoded + o.refused for o in outcomes.values()),
        "failures": failures,
        "seconds": round(time.perf_counter() - started, 1),
    }))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
