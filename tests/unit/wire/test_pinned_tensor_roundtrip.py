"""A parameter list survives chunking and reassembly bit for bit, whatever the chunk size, the
dtypes (big-endian inputs included) and the shapes (scalars and empty tensors included); found
unexercised by coverage of the wire tests (no test there finished an assembly or decoded)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fedcore.protocol.errors import PayloadTooLarge
from fedcore.protocol.specs import spec_of
from fedcore.wire.tensor import PayloadAssembler, decode, encode, iter_chunks

PARAMS = {
    "w": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "big_endian": np.array([1.5, -2.25, 1e30], dtype=">f8"),
    "count": np.array(-5, np.int64),
    "empty": np.zeros((0, 3), np.float16),
    "mask": np.array([True, False, True]),
}


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 1 << 20])
def test_chunks_reassemble_to_the_same_tensors(chunk_bytes: int) -> None:
    spec = spec_of(PARAMS)
    assembler = PayloadAssembler(spec, max_bytes=spec.nbytes)  # exactly at the limit: accepted
    chunks = list(iter_chunks(PARAMS, chunk_bytes))
    for offset, data in chunks:
        assert 0 < len(data) <= chunk_bytes
        assembler.add(offset, data)

    out = assembler.finish()

    assert sum(len(d) for _, d in chunks) == spec.nbytes
    assert list(out) == list(PARAMS)
    for name, value in PARAMS.items():
        assert out[name].shape == value.shape
        assert out[name].dtype.kind == value.dtype.kind and out[name].dtype.itemsize == value.dtype.itemsize
        np.testing.assert_array_equal(out[name], value)


def test_encode_and_decode_are_inverse() -> None:
    decoded = decode(spec_of(PARAMS), encode(PARAMS))

    for name, value in PARAMS.items():
        np.testing.assert_array_equal(decoded[name], value)


def test_a_limit_one_byte_below_the_payload_is_refused() -> None:
    spec = spec_of(PARAMS)

    with pytest.raises(PayloadTooLarge):
        PayloadAssembler(spec, max_bytes=spec.nbytes - 1)


def test_a_writable_native_buffer_is_decoded_in_place_without_a_copy() -> None:
    """The receiver's one preallocated buffer is the model: a multi-GB payload is not copied."""
    if sys.byteorder != "little":
        pytest.skip("the wire is little-endian: a big-endian host must convert")
    params = {"w": np.arange(6, dtype=np.float32), "n": np.array([1, 2], np.int64)}
    spec = spec_of(params)
    buffer = np.frombuffer(bytearray(encode(params)), dtype=np.uint8)

    out = decode(spec, buffer)

    assert all(np.shares_memory(value, buffer) for value in out.values())
    out["w"][0] = 42.0  # writable, and writes land in the buffer
    assert decode(spec, buffer)["w"][0] == 42.0


def test_a_spec_of_100_000_tensors_is_read_and_one_more_refused() -> None:
    from fedcore.proto.v1 import tensor_pb2 as tpb
    from fedcore.protocol.errors import WireError
    from fedcore.wire.convert import spec_from_proto, spec_to_proto

    limit = 100_000  # docs/protocol.md: "at most 100 000 tensors"
    template = spec_to_proto(spec_of({"x": np.zeros(1, np.float32)})).tensors[0]
    msg = tpb.ModelSpec()
    for i in range(limit + 1):
        item = msg.tensors.add()
        item.CopyFrom(template)
        item.name = f"t{i}"
    last = msg.tensors.pop()

    assert len(spec_from_proto(msg).tensors) == limit
    msg.tensors.append(last)
    with pytest.raises(WireError):
        spec_from_proto(msg)
