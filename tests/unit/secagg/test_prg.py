"""The mask PRG: known answers, an independent cross-check, and mask arithmetic."""

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedcore.secagg import prg

SEED = bytes(range(32))


def test_known_answer_uint32():
    assert prg.expand(SEED, 4).tolist() == [0x74EFFE07, 0x6E03D5E1, 0x11EE0E90, 0x9392948E]


def test_known_answer_uint64_is_the_same_stream():
    assert prg.expand(SEED, 2, np.uint64).tolist() == [0x6E03D5E174EFFE07, 0x9392948E11EE0E90]


def test_matches_aes128_ctr_computed_independently():
    encryptor = Cipher(algorithms.AES(SEED[:16]), modes.CTR(SEED[16:])).encryptor()
    expected = np.frombuffer(encryptor.update(bytes(4 * 1000)), dtype="<u4")

    assert np.array_equal(prg.expand(SEED, 1000), expected)


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
