"""The mask PRG: known answers, independent cross-checks, and mask arithmetic."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedcore.secagg import prg

SEED = bytes(range(32))


def test_known_answer_uint32():
    assert prg.expand(SEED, 4).tolist() == [0xAF032EC4, 0xEFB64F0F, 0xF55DDD17, 0x3EEB27C7]


def test_known_answer_uint64_is_the_same_stream():
    assert prg.expand(SEED, 2, np.uint64).tolist() == [0xEFB64F0FAF032EC4, 0x3EEB27C7F55DDD17]


def test_matches_aes128_ctr_computed_independently():
    counter = SEED[16:28] + (2).to_bytes(4, "big")
    encryptor = Cipher(algorithms.AES(SEED[:16]), modes.CTR(counter)).encryptor()
    expected = np.frombuffer(encryptor.update(bytes(4 * 1000)), dtype="<u4")

    assert np.array_equal(prg.expand(SEED, 1000), expected)


@pytest.mark.parametrize("block", [0, 1, 7, 24_999])
def test_block_is_aes_of_nonce_and_32_bit_counter(block):
    counter = SEED[16:28] + (block + 2).to_bytes(4, "big")
    encrypted = Cipher(algorithms.AES(SEED[:16]), modes.ECB()).encryptor().update(counter)
    words = prg.expand(SEED, 4 * 25_000)

    assert words[4 * block : 4 * block + 4].tobytes() == encrypted


def test_seed_bytes_after_the_nonce_are_unused():
    assert np.array_equal(prg.expand(SEED, 64), prg.expand(SEED[:28] + bytes(4), 64))


def test_different_seeds_give_different_streams():
    other = bytes(31) + b"\x01"

    assert not np.array_equal(prg.expand(SEED, 8), prg.expand(other, 8))


def test_add_then_subtract_cancels():
    acc = np.arange(1000, dtype=np.uint32)
    expander = prg.MaskExpander(1000, np.uint32)

    expander.add(acc, SEED)
    expander.subtract(acc, SEED)

    assert np.array_equal(acc, np.arange(1000, dtype=np.uint32))


def test_add_wraps_modulo_word_size():
    acc = np.full(4, 2**32 - 1, dtype=np.uint32)
    prg.MaskExpander(4, np.uint32).add(acc, SEED)

    assert np.array_equal(acc, prg.expand(SEED, 4) - np.uint32(1))


def test_seed_must_be_32_bytes():
    try:
        prg.expand(b"short", 4)
    except ValueError as exc:
        assert "32 bytes" in str(exc)
    else:
        raise AssertionError("a short seed was accepted")


def test_refuses_more_than_the_32_bit_counter_covers():
    with pytest.raises(ValueError, match="at most"):
        prg.MaskExpander(prg.MAX_BYTES // 4 + 1, np.uint32)


def test_fill_reuses_one_buffer():
    expander = prg.MaskExpander(100, np.uint64)
    first = expander.fill(SEED).copy()
    other = expander.fill(bytes(32))

    assert np.array_equal(first, prg.expand(SEED, 100, np.uint64))
    assert np.array_equal(other, prg.expand(bytes(32), 100, np.uint64))
    assert other.dtype == np.dtype("<u8")
