"""Property tests: tensors survive chunked encoding and reassembly bit for bit."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcore.protocol.specs import SUPPORTED_DTYPES, spec_of
from fedcore.wire.tensor import PayloadAssembler, decode, encode, iter_chunks

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from(SUPPORTED_DTYPES))
    return draw(hnp.arrays(dtype=dtype, shape=SHAPES))


@st.composite
def param_dicts(draw: st.DrawFn) -> dict[str, np.ndarray]:
    values = draw(st.lists(arrays(), min_size=0, max_size=5))
    return {f"layer{i}.weight": v for i, v in enumerate(values)}


def same_tensors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> bool:
    return list(got) == list(want) and all(
        got[k].dtype == want[k].dtype
        and got[k].shape == want[k].shape
        and got[k].tobytes() == want[k].tobytes()  # bitwise, so NaN payloads compare equal
        for k in want
    )


def reassemble(params: dict[str, np.ndarray], chunk_bytes: int) -> dict[str, np.ndarray]:
    assembler = PayloadAssembler(spec_of(params))
    for offset, data in iter_chunks(params, chunk_bytes):
        assembler.add(offset, data)
    return assembler.finish()


@given(params=param_dicts(), chunk_bytes=st.integers(min_value=1, max_value=256))
def test_chunked_round_trip_preserves_values_dtypes_and_shapes(
    params: dict[str, np.ndarray], chunk_bytes: int
) -> None:
    assert same_tensors(reassemble(params, chunk_bytes), params)


@given(params=param_dicts(), chunk_bytes=st.integers(min_value=1, max_value=256))
def test_chunks_are_contiguous_and_bounded(params: dict[str, np.ndarray], chunk_bytes: int) -> None:
    chunks = list(iter_chunks(params, chunk_bytes))

    assert all(0 < len(data) <= chunk_bytes for _, data in chunks)
    assert [offset for offset, _ in chunks] == [
        sum(len(d) for _, d in chunks[:i]) for i in range(len(chunks))
    ]
    assert b"".join(d for _, d in chunks) == encode(params)


@given(params=param_dicts())
def test_payload_size_follows_from_spec(params: dict[str, np.ndarray]) -> None:
    assert len(encode(params)) == spec_of(params).nbytes


@settings(max_examples=50)
@given(value=arrays())
def test_big_endian_input_is_encoded_little_endian(value: np.ndarray) -> None:
    big = value.astype(value.dtype.newbyteorder(">"))

    assert encode({"w": big}) == value.astype(value.dtype.newbyteorder("<")).tobytes()


@settings(max_examples=50)
@given(value=arrays())
def test_big_endian_input_decodes_to_native_dtype(value: np.ndarray) -> None:
    big = {"w": value.astype(value.dtype.newbyteorder(">"))}

    out = decode(spec_of(big), bytearray(encode(big)))

    assert same_tensors(out, {"w": value})
