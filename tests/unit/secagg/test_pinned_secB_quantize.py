"""The quantiser against its definition: q = floor(s) + [u < s - floor(s)] with
s = (clip(x) + c) * L / (2c) and one uniform u per value, so E[q] = s (unbiased, measured
per value with a fixed seed), q is one of the two levels around s, the ends of [-c, c] map
exactly to 0 and L, decoding subtracts c per client, and the weight coordinate of weighted
averaging comes back as the sum of the weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.quantize import Quantizer, append_weight, split_weight


def _q(clip: float = 2.5, bit_width: int = 10, max_clients: int = 3) -> Quantizer:
    return Quantizer.from_config(SecAggConfig(threshold=1, max_clients=max_clients, clip=clip,
                                              bit_width=bit_width))


def test_from_config_copies_clip_levels_and_width() -> None:
    q = _q()
    assert (q.clip, q.levels, q.bit_width) == (2.5, (2**10 - 1) // 3, 10)


@pytest.mark.parametrize("clip", [0.5, 2.5])
def test_rounding_is_floor_plus_a_bernoulli_of_the_fraction(clip: float) -> None:
    q = _q(clip=clip)
    x = np.random.default_rng(1).uniform(-1.5 * clip, 1.5 * clip, 500)

    words = q.quantize(x, np.random.default_rng(42))

    u = np.random.default_rng(42).random(x.size)  # the one uniform each value draws
    scaled = (np.clip(x, -clip, clip) + clip) * q.levels / (2 * clip)
    expected = np.minimum(np.floor(scaled) + (u < scaled - np.floor(scaled)), q.levels)
    np.testing.assert_array_equal(words, expected)
    assert words.dtype == np.uint32


@pytest.mark.parametrize(("value", "clip"), [(0.3, 1.0), (-0.77, 2.5), (1.9, 2.5), (-3.0, 4.0)])
def test_the_expected_level_is_the_scaled_value(value: float, clip: float) -> None:
    q = _q(clip=clip, bit_width=8, max_clients=1)  # few levels: a large fraction per level
    draws = 40_000
    words = q.quantize(np.full(draws, value), np.random.default_rng(7)).astype(np.float64)

    scaled = (value + clip) * q.levels / (2 * clip)
    frac = scaled - math.floor(scaled)
    assert set(np.unique(words).tolist()) <= {math.floor(scaled), math.floor(scaled) + 1}
    assert 0.1 < frac < 0.9  # so that floor, ceiling or nearest rounding fail by far
    standard_error = math.sqrt(frac * (1 - frac) / draws)
    assert abs(float(words.mean()) - scaled) < 5 * standard_error
    # and decoded, the mean is the value itself
    decoded = q.dequantize_sum(np.array([words.sum()]), draws)[0] / draws
    assert abs(decoded - value) < 5 * standard_error * 2 * clip / q.levels


def test_exact_levels_round_to_themselves_and_the_range_is_clipped() -> None:
    q = _q(clip=2.0, bit_width=8, max_clients=1)  # L = 255, step 4/255
    levels = np.array([0, 1, 100, 254, 255])
    values = levels * (4.0 / 255) - 2.0
    words = q.quantize(np.concatenate([values, [-2.0, 2.0, -1e9, 1e9]]),
                       np.random.default_rng(0))
    assert words.tolist()[:5] == levels.tolist()
    assert words.tolist()[5:] == [0, 255, 0, 255]


def test_the_output_is_never_above_the_levels() -> None:
    q = _q(clip=0.1, bit_width=16, max_clients=7)
    words = q.quantize(np.nextafter(np.full(10_000, 0.1), 0.0), np.random.default_rng(3))
    assert int(words.max()) == q.levels  # just below c rounds up to L, never past it


def test_wide_words_are_uint64() -> None:
    q = _q(clip=1.0, bit_width=40, max_clients=2)
    words = q.quantize([1.0, -1.0, 0.0], np.random.default_rng(0))
    assert words.dtype == np.uint64
    assert words.tolist()[:2] == [q.levels, 0] and q.levels == (2**40 - 1) // 2


def test_a_multidimensional_input_is_flattened() -> None:
    q = _q()
    assert q.quantize(np.zeros((2, 3)), np.random.default_rng(0)).shape == (6,)


def test_decoding_subtracts_the_clip_once_per_client() -> None:
    q = _q(clip=2.5, bit_width=10, max_clients=3)  # L = 341
    total = np.array([0, q.levels, 3 * q.levels, 2 * q.levels], np.uint64)
    np.testing.assert_allclose(q.dequantize_sum(total, 3), [-7.5, -2.5, 7.5, 2.5])
    np.testing.assert_allclose(q.dequantize_sum(np.array([1], np.uint64), 0), [5.0 / q.levels])


def test_weighted_averaging_recovers_the_weighted_sum_and_the_weights() -> None:
    clip = 2.0
    q = _q(clip=clip, bit_width=24, max_clients=3)
    updates = [np.array([0.5, -1.0]), np.array([1.5, 0.25]), np.array([-0.75, 1.0])]
    weights = [1.0, 0.5, 0.25]
    rng = np.random.default_rng(11)
    total = np.zeros(3, np.uint64)
    for x, w in zip(updates, weights, strict=True):
        vector = append_weight(w * x, w, clip=clip)
        assert vector[-1] == w * clip
        total += q.quantize(vector, rng).astype(np.uint64)

    weighted_sum, weight_sum = split_weight(q.dequantize_sum(total, 3), clip=clip)

    step = 2 * clip / q.levels
    expected = sum(w * x for x, w in zip(updates, weights, strict=True))
    np.testing.assert_allclose(weighted_sum, expected, atol=3 * step)
    assert abs(weight_sum - sum(weights)) < 3 * step / clip


def test_split_weight_divides_the_last_coordinate_by_the_clip() -> None:
    rest, weight = split_weight(np.array([1.0, 2.0, 3.0]), clip=4.0)
    assert rest.tolist() == [1.0, 2.0] and weight == 0.75


class _Uniforms:
    """A generator whose every uniform draw is `value` (a valid draw from [0, 1))."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.sizes: list[int] = []

    def random(self, size: int) -> np.ndarray:
        self.sizes.append(size)
        return np.full(size, self.value)


def test_a_value_on_a_level_stays_there_whatever_the_draw() -> None:
    q = _q(clip=127.5, bit_width=8, max_clients=1)  # L = 255: a step of exactly 1
    on_levels = np.array([-127.5, 127.5, 100 - 127.5, 7 - 127.5])
    expected = [0, 255, 100, 7]
    for u in (0.0, 0.5, 1.0 - 2**-53):
        rng = _Uniforms(u)
        assert q.quantize(on_levels, rng).tolist() == expected  # type: ignore[arg-type]
        assert rng.sizes == [4]  # one uniform per value


def test_a_value_between_levels_rounds_up_exactly_when_the_draw_is_below_the_fraction() -> None:
    q = _q(clip=127.5, bit_width=8, max_clients=1)
    value = 10.25 - 127.5  # a quarter of a step above level 10
    for u, level in ((0.0, 11), (0.24, 11), (0.26, 10), (1.0 - 2**-53, 10)):
        assert q.quantize([value], _Uniforms(u)).tolist() == [level]  # type: ignore[arg-type]
