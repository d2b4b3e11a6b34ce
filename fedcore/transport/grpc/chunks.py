"""Chunk messages (`ModelChunk`, `ResultChunk`) written and read without protobuf's payload copies.

Both messages share one layout: field 1 a small message (the model spec, or the result header)
and field 2 a `Chunk {uint64 offset = 1; bytes data = 2;}`. Built and parsed through protobuf,
every payload byte is copied into the message, out to the wire and back out of the parsed
message; on the coordinator, which does this for every client, that was the largest cost of a
round. Here a chunk costs one copy to write and none to read (the data is a view of the
received message). The bytes written are exactly protobuf's serialisation, and a message the
fast reader does not recognise (unknown or repeated fields, other wire types) is parsed by
protobuf instead, so every valid encoding is still accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedcore.proto.v1 import coordinator_pb2 as pb
from fedcore.proto.v1 import tensor_pb2 as tpb

_VARINT = 0
_LEN = 2
_Fields = dict[int, "int | memoryview"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_chunk_message(
    offset: int, pieces: Sequence[bytes | memoryview], head: bytes | None = None
) -> bytes:
    """A `ModelChunk`/`ResultChunk` whose chunk holds `pieces` joined, at `offset`.

    `head` is the serialised field 1 (spec or header), omitted when None. Byte-for-byte what
    protobuf writes for the same message; the payload is copied once.
    """
    size = sum(memoryview(p).nbytes for p in pieces)
    body: list[bytes] = []
    if offset:
        body += [b"\x08", _varint(offset)]
    if size:
        body += [b"\x12", _varint(size)]
    parts: list[bytes | memoryview] = []
    if head is not None:
        parts += [b"\x0a", _varint(len(head)), head]
    parts += [b"\x12", _varint(sum(map(len, body)) + size), *body, *pieces]
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class ResultPart:
    """One message of a `SubmitResult` stream: a header, or a chunk of payload (or neither)."""

    header: pb.ResultHeader | None = None
    offset: int = 0
    data: bytes | memoryview | None = None

    @property
    def is_chunk(self) -> bool:
        """Whether this message carries payload (the `chunk` case of the oneof)."""
        return self.data is not None


def read_result_chunk(raw: bytes) -> ResultPart:
    """Parse one serialised `ResultChunk`; payload data is a view of `raw`.

    Raises:
        google.protobuf.message.DecodeError: `raw` is not a `ResultChunk`.
    """
    top = _fields(raw, {1: _LEN, 2: _LEN})
    if top is not None and len(top) == 1:
        if 1 in top:
            return ResultPart(header=pb.ResultHeader.FromString(top[1]))
        chunk = _fields(top[2], {1: _VARINT, 2: _LEN})  # type: ignore[arg-type]
        if chunk is not None:
            data = chunk.get(2, memoryview(b""))
            return ResultPart(offset=int(chunk.get(1, 0)), data=data)  # type: ignore[arg-type]
    return as_result_part(pb.ResultChunk.FromString(raw))


def as_result_part(msg: pb.ResultChunk | ResultPart) -> ResultPart:
    """`msg` as a `ResultPart` (unchanged when it is one)."""
    if isinstance(msg, ResultPart):
        return msg
    match msg.WhichOneof("part"):
        case "header":
            return ResultPart(header=msg.header)
        case "chunk":
            return ResultPart(offset=msg.chunk.offset, data=msg.chunk.data)
    return ResultPart()


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One message of a `DownloadModel` stream: the spec (first message only) and a chunk."""

    spec: tpb.ModelSpec | None
    offset: int
    data: bytes | memoryview


def read_model_chunk(raw: bytes) -> ModelPart:
    """Parse one serialised `ModelChunk`; payload data is a view of `raw`.

    Raises:
        google.protobuf.message.DecodeError: `raw` is not a `ModelChunk`.
    """
    top = _fields(raw, {1: _LEN, 2: _LEN})
    if top is not None:
        chunk = _fields(top.get(2, memoryview(b"")), {1: _VARINT, 2: _LEN})  # type: ignore[arg-type]
        if chunk is not None:
            spec = tpb.ModelSpec.FromString(top[1]) if 1 in top else None
            data = chunk.get(2, memoryview(b""))
            return ModelPart(spec=spec, offset=int(chunk.get(1, 0)), data=data)  # type: ignore[arg-type]
    msg = pb.ModelChunk.FromString(raw)
    return ModelPart(
        spec=msg.spec if msg.HasField("spec") else None,
        offset=msg.chunk.offset,
        data=msg.chunk.data,
    )


def _fields(raw: bytes | memoryview, wanted: dict[int, int]) -> _Fields | None:
    """The fields of a message holding only `wanted` fields (number -> wire type), each at most
    once; None when it holds anything else or is malformed (the caller then asks protobuf)."""
    view = memoryview(raw)
    end = len(view)
    pos = 0
    out: _Fields = {}
    while pos < end:
        key, pos = _read_varint(view, pos)
        if key < 0:
            return None
        number, wire = key >> 3, key & 7
        if wanted.get(number) != wire or number in out:
            return None
        value, pos = _read_varint(view, pos)
        if value < 0:
            return None
        if wire == _LEN:
            if pos + value > end:
                return None
            out[number] = view[pos : pos + value]
            pos += value
        else:
            out[number] = value
    return out


def _read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; (-1, pos) when malformed or truncated."""
    value = shift = 0
    end = len(view)
    while pos < end and shift < 64:
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return -1, pos
