"""`refill_generator` gives a CPU generator a whole MT19937 state from the OS, not a seed.

The claim (fedcore.dp.opacus docstring): all 624 words of torch's MT19937 state come from
`os.urandom`, and the generator twists them before its first output. Pinned two ways: the
words are not the expansion of any seed (a seeded state satisfies MT19937's initialisation
recurrence word[1] = 1812433253 * (word[0] ^ (word[0] >> 30)) + 1 mod 2^32, which OS words
break with probability 2^-32), and the generator's outputs are exactly those of a reference
MT19937 (numpy's) loaded with the same 624 words at position 624 (twist first). A CPU state
of an unknown layout is refused untouched; an accelerator's Philox generator gets a fresh
full 64-bit seed (its whole key).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedcore.dp.opacus import refill_generator

_WORDS = slice(24, 24 + 624 * 8)


def _words(gen: torch.Generator) -> np.ndarray:
    raw = gen.get_state().numpy().tobytes()
    return np.frombuffer(raw[_WORDS], dtype="<u8").astype(np.uint32)


def _follows_seed_recurrence(words: np.ndarray) -> bool:
    w0 = int(words[0])
    return int(words[1]) == (1812433253 * (w0 ^ (w0 >> 30)) + 1) % 2**32


def test_a_seeded_state_follows_the_init_recurrence_and_a_refilled_one_does_not() -> None:
    gen = torch.Generator().manual_seed(5)
    assert _follows_seed_recurrence(_words(gen))  # the check can bite

    for _ in range(4):
        refill_generator(gen)
        words = _words(gen)
        assert not _follows_seed_recurrence(words)
        assert len(np.unique(words)) > 600  # 624 fresh words, not a few bits spread out


def test_two_generators_of_one_seed_differ_in_almost_every_word_after_a_refill() -> None:
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)

    refill_generator(a)
    refill_generator(b)

    assert (_words(a) != _words(b)).sum() > 600


def test_the_refilled_generator_outputs_mt19937_of_those_words_twisted_first() -> None:
    gen = torch.Generator().manual_seed(3)
    torch.randn(5, generator=gen)  # leave the old state part-way through its block
    refill_generator(gen)
    reference = np.random.MT19937(0)
    reference.state = {"bit_generator": "MT19937", "state": {"key": _words(gen), "pos": 624}}

    raw = [int(v) for v in reference.random_raw(16)]
    drawn = torch.empty(8, dtype=torch.int64).random_(generator=gen).tolist()

    # torch's 64-bit draw is (first << 32) | second, masked to 63 bits for int64
    assert drawn == [((raw[2 * k] << 32) | raw[2 * k + 1]) % 2**63 for k in range(8)]


class _FakeGenerator:
    """A generator stand-in: a device, a state of `state_bytes` bytes, and a record of calls."""

    def __init__(self, device: str, state_bytes: int = 5056) -> None:
        self.device = torch.device(device)
        self.state_bytes = state_bytes
        self.seeds: list[int] = []
        self.states_set = 0

    def get_state(self) -> torch.Tensor:
        return torch.zeros(self.state_bytes, dtype=torch.uint8)

    def set_state(self, state: torch.Tensor) -> None:
        self.states_set += 1

    def manual_seed(self, seed: int) -> _FakeGenerator:
        self.seeds.append(seed)
        return self


def test_a_cpu_state_of_an_unknown_layout_is_refused_and_left_alone() -> None:
    gen = _FakeGenerator("cpu", state_bytes=5056 + 8)

    with pytest.raises(RuntimeError, match="5064 bytes"):
        refill_generator(gen)  # type: ignore[arg-type]

    assert gen.states_set == 0 and gen.seeds == []


def test_a_known_cpu_layout_is_refilled_through_its_state_not_a_seed() -> None:
    gen = _FakeGenerator("cpu")

    refill_generator(gen)  # type: ignore[arg-type]

    assert gen.states_set == 1 and gen.seeds == []


def test_an_accelerator_generator_gets_a_fresh_full_64_bit_seed_each_time() -> None:
    gen = _FakeGenerator("meta")  # any device but the CPU: Philox, keyed by its 64-bit seed

    for _ in range(32):
        refill_generator(gen)  # type: ignore[arg-type]

    assert gen.states_set == 0
    assert len(set(gen.seeds)) == 32
    assert all(0 <= s < 2**64 for s in gen.seeds)
    assert max(gen.seeds) >= 2**63  # the top bit is drawn too (all below: p = 2^-32)
