"""How `NoisyEncoding.for_round` sizes a round: the levels L, the offset T and the noise.

Written out from the fedcore.dp.secagg_noise docstring: T(L) = ceil(20 z (L C / (2c) + sqrt d))
(20 std of the largest share, t = 1), L + 2 T(L) must fit each client's range, and L is as
large as that allows (up to a few levels of slack in the closed-form estimate) unless the
noise std z (L C / (2c) + sqrt d) would pass 2**20; fewer than 256 levels is refused. The
noise is sized at the round's threshold t with sensitivity L C / (2c) + sqrt d, and the scale
is L / (2c).
"""

from __future__ import annotations

import math

import pytest

from fedcore.dp.secagg_noise import MAX_NOISE_STD, MIN_LEVELS, TAIL_STDS, NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.secagg.config import SecAggConfig


def _tail(levels: int, z: float, big_c: float, c: float, dim: int) -> int:
    return math.ceil(TAIL_STDS * z * (levels * big_c / (2 * c) + math.sqrt(dim)))


def _most_levels(room: int, z: float, big_c: float, c: float, dim: int) -> int:
    """The largest L with L + 2 T(L) <= room (L + 2 T(L) grows with L: bisect)."""
    lo, hi = -1, room
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid + 2 * _tail(mid, z, big_c, c, dim) <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


@pytest.mark.parametrize(("bit_width", "max_clients", "threshold", "z", "big_c", "c", "dim"), [
    (24, 10, 2, 0.5, 1.0, 1.0, 11),
    (24, 3, 3, 0.2, 0.5, 2.0, 101),
    (20, 7, 4, 1.3, 2.0, 1.0, 5),
    (32, 100, 50, 0.05, 1.0, 0.5, 1001),
])
def test_the_levels_fill_the_range_around_the_noise_tails(
        bit_width: int, max_clients: int, threshold: int, z: float, big_c: float, c: float,
        dim: int) -> None:
    secagg = SecAggConfig(max_clients=max_clients, threshold=threshold, clip=c,
                          bit_width=bit_width)
    config = DistributedDPConfig(noise_multiplier=z, clip_norm=big_c,
                                 kind=IntegerNoise.DISCRETE_GAUSSIAN)

    encoding = NoisyEncoding.for_round(config, secagg, dim)

    levels = encoding.quantizer.levels
    most = _most_levels(secagg.levels, z, big_c, c, dim)
    assert most - 3 <= levels <= most  # fits, and wastes at most the estimate's slack
    assert encoding.offset == _tail(levels, z, big_c, c, dim)
    assert levels + 2 * encoding.offset <= secagg.levels
    sensitivity = levels * big_c / (2 * c) + math.sqrt(dim)
    assert encoding.noise.l2_sensitivity == pytest.approx(sensitivity, rel=1e-12)
    assert encoding.noise.noise_multiplier == z
    assert encoding.noise.min_survivors == threshold
    assert encoding.noise.kind is IntegerNoise.DISCRETE_GAUSSIAN
    assert encoding.scale == pytest.approx(levels / (2 * c), rel=1e-12)
    assert encoding.quantizer.clip == c and encoding.quantizer.bit_width == bit_width
    assert (encoding.dim, encoding.config) == (dim, config)
    assert z * sensitivity <= MAX_NOISE_STD  # the cap does not bind here


@pytest.mark.parametrize(("z", "big_c", "c", "dim"), [
    (1.0, 1.0, 1.0, 5), (3.0, 1.0, 1.0, 10_001), (0.7, 0.5, 2.0, 17), (2.0, 3.0, 0.5, 2)])
def test_where_the_bits_allow_more_the_levels_stop_at_a_noise_std_of_2_to_the_20(
        z: float, big_c: float, c: float, dim: int) -> None:
    secagg = SecAggConfig(max_clients=2, threshold=1, clip=c, bit_width=56)
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=z, clip_norm=big_c),
                                       secagg, dim)

    levels = encoding.quantizer.levels

    def std(n: int) -> float:
        return z * (n * big_c / (2 * c) + math.sqrt(dim))

    assert MAX_NOISE_STD == 2.0**20  # the documented cap (numpy's Poisson drifts above)
    assert std(levels) <= 2.0**20 < std(levels + 1)
    assert levels < _most_levels(secagg.levels, z, big_c, c, dim)
    assert encoding.noise.total_variance == pytest.approx(std(levels) ** 2, rel=1e-12)


def test_256_levels_are_accepted_and_255_refused() -> None:
    secagg = SecAggConfig(max_clients=10, threshold=2, clip=1.0, bit_width=20)
    assert _most_levels(secagg.levels, 20.04, 1.0, 1.0, 5) == MIN_LEVELS == 256
    assert _most_levels(secagg.levels, 20.1, 1.0, 1.0, 5) == 255

    at_least = NoisyEncoding.for_round(
        DistributedDPConfig(noise_multiplier=20.04, clip_norm=1.0), secagg, 5)
    assert at_least.quantizer.levels == 256
    with pytest.raises(ValueError, match="255 < 256"):
        NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=20.1, clip_norm=1.0),
                                secagg, 5)
