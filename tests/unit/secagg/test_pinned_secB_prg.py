"""The mask PRG is a function of its seed: the same seed gives the same words (in both word
sizes, through `expand` or a reused expander), any change to the key or nonce bytes gives an
unrelated stream, the words look uniform, a mask added then subtracted cancels in either word
size, and the size limit is the 32-bit block counter's (a documented constant)."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.secagg import prg

SEED = bytes(range(100, 132))


def test_the_same_seed_gives_the_same_words_every_time() -> None:
    first = prg.expand(SEED, 257)
    expander = prg.MaskExpander(257, np.uint32)
    expander.fill(bytes(32))  # a fill with another seed in between changes nothing
    np.testing.assert_array_equal(expander.fill(SEED), first)
    np.testing.assert_array_equal(prg.expand(SEED, 257), first)
    # a longer expansion starts with the shorter one
    np.testing.assert_array_equal(prg.expand(SEED, 1000)[:257], first)


def test_uint64_words_are_pairs_of_uint32_words_little_endian() -> None:
    low = prg.expand(SEED, 64).astype(np.uint64)
    wide = prg.expand(SEED, 32, np.uint64)
    assert wide.dtype == np.uint64
    np.testing.assert_array_equal(wide, low[0::2] | (low[1::2] << np.uint64(32)))


@pytest.mark.parametrize("byte", [0, 15, 16, 27])
def test_changing_a_key_or_nonce_byte_gives_an_unrelated_stream(byte: int) -> None:
    other = bytearray(SEED)
    other[byte] ^= 1
    a, b = prg.expand(SEED, 4096), prg.expand(bytes(other), 4096)
    # independent streams agree on a word with probability 2**-32, on a bit half the time
    assert int(np.count_nonzero(a == b)) == 0
    differing_bits = int(np.unpackbits((a ^ b).view(np.uint8)).sum())
    assert abs(differing_bits / (32 * 4096) - 0.5) < 0.01


@pytest.mark.parametrize("bits", [1, 7, 12])
def test_the_words_mod_2_to_the_b_are_uniform(bits: int) -> None:
    words = prg.expand(SEED, 60_000) & np.uint32((1 << bits) - 1)
    counts = np.bincount(words, minlength=1 << bits).astype(np.float64)
    expected = words.size / (1 << bits)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    dof = (1 << bits) - 1
    assert chi2 < dof + 6 * np.sqrt(2 * dof)  # far inside for a uniform stream


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_masks_cancel_and_wrap_in_either_word_size(dtype: type) -> None:
    start = np.full(300, np.iinfo(dtype).max, dtype=dtype)
    acc = start.copy()
    expander = prg.MaskExpander(300, dtype)

    expander.add(acc, SEED)
    np.testing.assert_array_equal(acc, prg.expand(SEED, 300, dtype) - dtype(1))  # wrapped
    expander.add(acc, bytes(32))
    expander.subtract(acc, SEED)
    expander.subtract(acc, bytes(32))

    np.testing.assert_array_equal(acc, start)
    assert acc.dtype == dtype


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_seed_is_exactly_32_bytes(size: int) -> None:
    expander = prg.MaskExpander(4, np.uint32)
    with pytest.raises(ValueError):
        expander.fill(bytes(size))
    with pytest.raises(ValueError):
        prg.expand(bytes(size), 4)


def test_the_size_limit_is_what_the_32_bit_counter_from_2_covers() -> None:
    assert (prg.SEED_BYTES, prg.TAG_BYTES) == (32, 16)
    assert prg.MAX_BYTES == (2**32 - 2) * 16  # counter blocks 2 .. 2**32 - 1, 16 bytes each
    for dtype, size in ((np.uint32, 4), (np.uint64, 8)):
        with pytest.raises(ValueError):
            prg.MaskExpander(prg.MAX_BYTES // size + 1, dtype)


def test_the_words_are_a_view_of_the_stream_without_the_tag() -> None:
    expander = prg.MaskExpander(5, np.uint32)
    words = expander.fill(SEED)
    assert words.shape == (5,) and words.dtype == np.dtype("<u4")
    np.testing.assert_array_equal(words, prg.expand(SEED, 8)[:5])


class _SmallBuffers:
    """numpy, except that `empty` hands back a small buffer: 64 GiB cannot be allocated here."""

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)

    @staticmethod
    def empty(size: int, dtype: object) -> np.ndarray:
        return np.zeros(64, dtype=dtype)  # type: ignore[call-overload,no-any-return]


def test_exactly_the_limit_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last counter block may be used: MAX_BYTES itself is allowed, one word more is not.
    The allocations are stubbed; the limit, not the memory, is under test."""
    monkeypatch.setattr(prg, "np", _SmallBuffers())
    monkeypatch.setattr(prg, "bytes", lambda size: b"", raising=False)

    prg.MaskExpander(prg.MAX_BYTES // 4, np.uint32)
    prg.MaskExpander(prg.MAX_BYTES // 8, np.uint64)
    with pytest.raises(ValueError):
        prg.MaskExpander(prg.MAX_BYTES // 8 + 1, np.uint64)
