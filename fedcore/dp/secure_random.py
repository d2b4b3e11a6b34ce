"""Client randomness: a numpy `Generator` over a CSPRNG for production, or numpy's PCG64.

Guarantee of `secure_generator`: every bit it hands out is AES-128 in counter mode
(`randomgen.AESCounter`) under a 128-bit key drawn from the operating system's CSPRNG
(`secrets`), so without the key its output cannot be told apart from uniform bits by any
efficient observer, nor predicted from earlier output (unlike PCG64, whose state an observer of
enough raw outputs can reconstruct). The key never leaves the process and is not logged.
Distributions (uniforms for stochastic rounding, Poisson for Skellam noise, geometric for the
discrete Gaussian) are numpy's algorithms over those bits, so their statistics are numpy's.

`client_generator(secure=False)` keeps the research default: PCG64 seeded with 128 bits from
`secrets` (unpredictable seed, statistically sound, not cryptographically secure).
"""

from __future__ import annotations

import secrets

import numpy as np
from randomgen import AESCounter


def secure_generator() -> np.random.Generator:
    """A `Generator` drawing from AES-128-CTR under a fresh key from the OS CSPRNG."""
    return np.random.Generator(AESCounter(key=secrets.randbits(128)))


def client_generator(*, secure: bool) -> np.random.Generator:
    """The generator a client uses for one secure-aggregation round's rounding and noise.

    Args:
        secure: True for `secure_generator` (production); False for PCG64 with a seed
            from `secrets` (simulation and research: faster, not a CSPRNG).
    """
    if secure:
        return secure_generator()
    return np.random.default_rng(secrets.randbits(128))


def is_secure(rng: np.random.Generator) -> bool:
    """Whether `rng` draws from the CSPRNG of `secure_generator`."""
    return isinstance(rng.bit_generator, AESCounter)
