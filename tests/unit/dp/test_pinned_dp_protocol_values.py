"""Values two parties (or two versions) must agree on, pinned exactly.

- The round encoding: the coordinator and every client derive the levels L and the offset T
  from the round's settings on their own (`NoisyEncoding.for_round`), so for given settings
  they are part of the protocol: a client deriving other values decodes to garbage in a mixed
  round. Pinned for settings across bit widths, noise and dimensions.
- The distributed ε: the Skellam bound is converted at the integer orders 2..256 (Opacus'
  conversion); a strongly noised run's optimum sits at the top order, a weakly noised one's at
  the bottom, so either end moved changes the ε the coordinator reports.
- The research generator: PCG64 seeded with 128 bits drawn from `secrets` (module docstring).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from opacus.accountants.analysis import rdp as rdp_analysis

from fedcore.dp import secure_random
from fedcore.dp.distributed import DistributedNoise, skellam_epsilon
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig


@pytest.mark.parametrize(("bit_width", "max_clients", "z", "big_c", "c", "dim", "levels",
                          "offset"), [
    (24, 10, 0.5, 1.0, 1.0, 11, 152513, 762599),
    (24, 3, 0.2, 0.5, 2.0, 101, 2796161, 1398121),
    (20, 7, 1.3, 2.0, 1.0, 5, 2824, 73483),
    (32, 100, 0.05, 1.0, 0.5, 1001, 14316535, 14316567),
    (28, 5, 0.003, 0.5, 1.0, 7, 52123387, 781851),
    (40, 20, 0.02, 1.0, 1.0, 50, 104857585, 20971520),
])
def test_the_round_encoding_derived_from_the_settings_is_fixed(
        bit_width: int, max_clients: int, z: float, big_c: float, c: float, dim: int,
        levels: int, offset: int) -> None:
    secagg = SecAggConfig(max_clients=max_clients, threshold=2, clip=c, bit_width=bit_width)

    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=z, clip_norm=big_c),
                                       secagg, dim)

    assert (encoding.quantizer.levels, encoding.offset) == (levels, offset)


def _bound_epsilon(z: float, d2: float, dim: int, orders: list[int]) -> float:
    """The documented Skellam RDP bound, converted by Opacus at `orders`."""
    a = np.asarray(orders, dtype=np.float64)
    var, d1 = (z * d2) ** 2, min(math.sqrt(dim) * d2, d2 * d2)
    rdp = a * d2**2 / (2 * var) + np.minimum(((2 * a - 1) * d2**2 + 6 * d1) / (4 * var**2),
                                             3 * d1 / (2 * var))
    eps, _ = rdp_analysis.get_privacy_spent(orders=orders, rdp=list(rdp), delta=1e-5)
    return float(eps)


@pytest.mark.filterwarnings("ignore:Optimal order")
@pytest.mark.parametrize(("z", "other_orders"), [
    (100.0, range(2, 258)),  # optimum at order 256: one order more would lower the figure
    (0.3, range(3, 257)),  # optimum at order 2: one order less would raise it
])
def test_the_skellam_epsilon_is_the_bound_minimised_over_orders_2_to_256(
        z: float, other_orders: range) -> None:
    noise = DistributedNoise(noise_multiplier=z, l2_sensitivity=50.0, min_survivors=1)

    reported = skellam_epsilon(noise, dim=10, rounds=1, delta=1e-5)

    assert reported == pytest.approx(_bound_epsilon(z, 50.0, 10, list(range(2, 257))), rel=1e-12)
    assert reported != pytest.approx(_bound_epsilon(z, 50.0, 10, list(other_orders)), rel=1e-6)


def test_the_research_generator_is_pcg64_seeded_with_128_bits_from_secrets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[int, int]] = []
    real = secure_random.secrets.randbits

    def spy(k: int) -> int:
        value = real(k)
        drawn.append((k, value))
        return value

    monkeypatch.setattr(secure_random.secrets, "randbits", spy)

    rng = secure_random.client_generator(secure=False)

    [(bits, seed)] = drawn
    assert bits == 128
    assert isinstance(rng.bit_generator, np.random.PCG64)
    assert rng.random(4).tolist() == np.random.default_rng(seed).random(4).tolist()
