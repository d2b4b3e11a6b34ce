"""Masked-vector packing against its definition: the bytes are the little-endian encoding of
one integer holding coordinate i at bits [i*b, (i+1)*b) (checked with Python integers for
every b from 1 to 64, across byte and chunk boundaries), only the low b bits of a word count,
and unpacking refuses any other length and any set padding bit."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.secagg.errors import SecAggError
from fedcore.secagg.packing import pack, packed_size, unpack, word_dtype


def _reference(values: list[int], bit_width: int) -> bytes:
    stream = 0
    for i, value in enumerate(values):
        stream |= (value & ((1 << bit_width) - 1)) << (i * bit_width)
    return stream.to_bytes((len(values) * bit_width + 7) // 8, "little")


def _values(bit_width: int, dim: int, seed: int) -> list[int]:
    top = (1 << bit_width) - 1
    edges = [top, 0, 1, top - 1, 1 << (bit_width - 1), (1 << (bit_width - 1)) - 1]
    rng = np.random.default_rng(seed)
    return [*edges, *(int(v) for v in rng.integers(0, top, dim - len(edges), endpoint=True,
                                                   dtype=np.uint64))]


@pytest.mark.parametrize("bit_width", range(1, 65))
def test_packing_is_the_little_endian_bit_stream_and_round_trips(bit_width: int) -> None:
    dim = 13  # 13 * b bits: most widths end inside a byte
    values = _values(bit_width, dim, bit_width)
    words = np.array(values, dtype=np.uint64).astype(word_dtype(bit_width))

    data = pack(words, bit_width)

    assert data == _reference(values, bit_width)
    assert len(data) == packed_size(dim, bit_width)
    back = unpack(data, bit_width, dim)
    assert back.dtype == word_dtype(bit_width)
    assert back.tolist() == values


def test_small_known_answers() -> None:
    assert pack(np.array([1], np.uint32), 3) == b"\x01"
    assert pack(np.array([1, 2, 3], np.uint32), 3) == b"\xd1\x00"  # 100 010 110, LSB first
    assert pack(np.array([0x0AB, 0xCDE], np.uint32), 12) == b"\xab\xe0\xcd"
    assert pack(np.array([0x01020304], np.uint32), 32) == b"\x04\x03\x02\x01"
    assert pack(np.array([0x0102], np.uint32), 16) == b"\x02\x01"


@pytest.mark.parametrize("bit_width", [1, 12, 33])
def test_long_vectors_pack_across_chunks(bit_width: int) -> None:
    dim = (1 << 16) * 2 + 5  # more than two chunks of the bit-level path
    rng = np.random.default_rng(bit_width)
    values = rng.integers(0, 1 << bit_width, dim, dtype=np.uint64)
    words = values.astype(word_dtype(bit_width))

    data = pack(words, bit_width)

    # eight coordinates fill whole bytes, so the stream is the blocks of eight packed alone
    blocks = [_reference(values[i : i + 8].tolist(), bit_width) for i in range(0, dim, 8)]
    assert data == b"".join(blocks)
    np.testing.assert_array_equal(unpack(data, bit_width, dim), words)


@pytest.mark.parametrize("bit_width", [5, 8, 12, 16, 31, 32])
def test_only_the_low_bits_of_a_word_are_packed(bit_width: int) -> None:
    low = np.array([3, 0, 1, 2], np.uint32)
    noisy = low | np.uint32(0xFFFFFFFF ^ ((1 << bit_width) - 1))  # every higher bit set
    assert pack(noisy, bit_width) == pack(low, bit_width)
    assert pack(np.array([2**40 + 5], np.uint64), 33) == pack(np.array([5], np.uint64), 33)


@pytest.mark.parametrize(("dim", "bit_width"), [(1, 1), (7, 1), (8, 1), (9, 1), (3, 7),
                                                (5, 12), (1, 33), (3, 63), (2, 64)])
def test_packed_size_rounds_the_bits_up_to_bytes(dim: int, bit_width: int) -> None:
    assert packed_size(dim, bit_width) == -(-dim * bit_width // 8)
    data = bytes(packed_size(dim, bit_width))
    assert unpack(data, bit_width, dim).tolist() == [0] * dim
    for wrong in (data[:-1], data + b"\0"):
        with pytest.raises(SecAggError):
            unpack(wrong, bit_width, dim)


@pytest.mark.parametrize(("dim", "bit_width"), [(1, 1), (3, 5), (5, 12), (1, 33), (3, 63)])
def test_every_padding_bit_must_be_zero(dim: int, bit_width: int) -> None:
    used = dim * bit_width
    size = packed_size(dim, bit_width)
    full = (1 << used) - 1
    ones = full.to_bytes(size, "little")  # every coordinate all ones, padding zero
    assert unpack(ones, bit_width, dim).tolist() == [(1 << bit_width) - 1] * dim
    for bit in range(used, 8 * size):
        spoiled = (full | (1 << bit)).to_bytes(size, "little")
        with pytest.raises(SecAggError):
            unpack(spoiled, bit_width, dim)


def test_unpacking_reads_a_memoryview_in_place() -> None:
    words = np.array([1, 2, 3, 4095], np.uint32)
    data = pack(words, 12)
    np.testing.assert_array_equal(unpack(memoryview(data), 12, 4), words)
    np.testing.assert_array_equal(unpack(memoryview(pack(words, 16)), 16, 4), words)


def test_the_word_holds_up_to_32_bits_in_uint32_then_uint64() -> None:
    assert [word_dtype(b) for b in (1, 31, 32, 33, 64)] == [np.dtype(np.uint32)] * 3 + [
        np.dtype(np.uint64)] * 2


@pytest.mark.parametrize("bit_width", [32, 64])
def test_word_aligned_vectors_are_read_in_place_from_the_payload(bit_width: int) -> None:
    """The coordinator reads masked vectors in place (`MaskedInput`): no copy at 32 or 64 bits."""
    words = np.array([5, 6, 7], dtype=word_dtype(bit_width))
    payload = bytearray(pack(words, bit_width))

    out = unpack(memoryview(payload), bit_width, 3)

    assert np.shares_memory(out, np.frombuffer(payload, np.uint8))
    np.testing.assert_array_equal(out, words)
