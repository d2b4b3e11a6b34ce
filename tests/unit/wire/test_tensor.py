"""Unit tests for the tensor codec's failure modes and checks."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.protocol.errors import PayloadTooLarge, WireError
from fedcore.protocol.specs import ModelSpec, TensorSpec, check_matches, spec_of
from fedcore.wire.tensor import PayloadAssembler, check_finite, decode, iter_chunks

F32 = np.dtype("float32")


def params() -> dict[str, np.ndarray]:
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}


def chunks(chunk_bytes: int = 8) -> list[tuple[int, bytes]]:
    return list(iter_chunks(params(), chunk_bytes))


def test_out_of_order_chunk_raises() -> None:
    first, second, *_ = chunks()
    assembler = PayloadAssembler(spec_of(params()))

    with pytest.raises(WireError, match="offset"):
        assembler.add(*second)
    assembler.add(*first)  # the refused chunk left the assembler where it was


def test_repeated_chunk_raises() -> None:
    first, *_ = chunks()
    assembler = PayloadAssembler(spec_of(params()))
    assembler.add(*first)

    with pytest.raises(WireError):
        assembler.add(*first)


def test_bytes_beyond_the_spec_raise_payload_too_large() -> None:
    assembler = PayloadAssembler(spec_of(params()))
    for offset, data in chunks():
        assembler.add(offset, data)

    with pytest.raises(PayloadTooLarge):
        assembler.add(spec_of(params()).nbytes, b"\x00")


def test_chunk_overrunning_the_spec_raises_payload_too_large() -> None:
    nbytes = spec_of(params()).nbytes
    assembler = PayloadAssembler(spec_of(params()))

    with pytest.raises(PayloadTooLarge):
        assembler.add(0, b"\x00" * (nbytes + 1))
    assert not assembler.complete


def test_incomplete_payload_raises_on_finish() -> None:
    first, *_ = chunks()
    assembler = PayloadAssembler(spec_of(params()))
    assembler.add(*first)

    with pytest.raises(WireError, match="incomplete"):
        assembler.finish()


def test_spec_larger_than_max_bytes_is_refused_before_allocating() -> None:
    with pytest.raises(PayloadTooLarge):
        PayloadAssembler(spec_of(params()), max_bytes=spec_of(params()).nbytes - 1)


def test_spec_with_overflowing_shape_is_refused_by_max_bytes() -> None:
    huge = ModelSpec(tensors=(TensorSpec(name="w", dtype=F32, shape=(2**62, 4)),))

    with pytest.raises(PayloadTooLarge):
        PayloadAssembler(huge, max_bytes=1 << 30)


def test_tensor_size_is_exact_for_huge_shapes() -> None:
    assert TensorSpec(name="w", dtype=F32, shape=(2**62, 4)).nbytes == 2**66


def test_zero_d_tensor_has_one_element() -> None:
    assert TensorSpec(name="s", dtype=F32, shape=()).nbytes == 4


def test_decode_rejects_wrong_buffer_length() -> None:
    with pytest.raises(WireError):
        decode(spec_of(params()), bytearray(spec_of(params()).nbytes + 1))


def test_unsupported_dtype_raises() -> None:
    with pytest.raises(WireError, match="unsupported dtype"):
        spec_of({"c": np.zeros(2, np.complex64)})


def test_negative_dimension_raises() -> None:
    with pytest.raises(WireError, match="negative"):
        TensorSpec(name="w", dtype=F32, shape=(2, -1))


def test_duplicate_names_raise() -> None:
    t = TensorSpec(name="w", dtype=F32, shape=(1,))

    with pytest.raises(WireError, match="duplicate"):
        ModelSpec(tensors=(t, t))


def test_nonpositive_chunk_size_raises() -> None:
    with pytest.raises(ValueError):
        list(iter_chunks(params(), 0))


def test_check_matches_accepts_equal_specs() -> None:
    check_matches(spec_of(params()), spec_of(params()))


def test_check_matches_names_tensor_with_other_shape() -> None:
    other = {**params(), "b": np.ones(4, np.float32)}

    with pytest.raises(WireError, match="'b'.*shape"):
        check_matches(spec_of(other), spec_of(params()))


def test_check_matches_names_tensor_with_other_dtype() -> None:
    other = {**params(), "w": params()["w"].astype(np.float64)}

    with pytest.raises(WireError, match="'w'.*dtype"):
        check_matches(spec_of(other), spec_of(params()))


def test_check_matches_names_missing_and_unexpected_tensors() -> None:
    other = {"w": params()["w"], "bias": params()["b"]}

    with pytest.raises(WireError, match=r"missing \['b'\], unexpected \['bias'\]"):
        check_matches(spec_of(other), spec_of(params()))


def test_check_matches_rejects_reordered_tensors() -> None:
    reordered = {"b": params()["b"], "w": params()["w"]}

    with pytest.raises(WireError):
        check_matches(spec_of(reordered), spec_of(params()))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_check_finite_catches_non_finite_values(bad: float, dtype: type) -> None:
    value = np.zeros(3, dtype)
    value[1] = bad

    with pytest.raises(WireError, match="'w'"):
        check_finite({"ok": np.zeros(2, dtype), "w": value})


def test_check_finite_accepts_finite_and_integer_tensors() -> None:
    check_finite({"f": np.ones(2, np.float32), "i": np.array([-1, 2**62], np.int64)})
