"""Stochastic uniform quantisation: packing round trips, bounded error, and unbiasedness (a
floor quantiser, the same code with rounding always down, fails the same statistical test)."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.compression.quantize import BITS, dequantize, pack, packed_bytes, quantize, unpack


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 1001])
def test_pack_round_trips(bits: int, size: int) -> None:
    q = np.random.default_rng(size).integers(0, 1 << bits, size=size).astype(np.uint8)

    packed = pack(q, bits)

    assert packed.size == packed_bytes(size, bits)
    np.testing.assert_array_equal(unpack(packed, bits, size), q)


@pytest.mark.parametrize("bits", BITS)
def test_error_is_below_one_step_and_extremes_are_exact(bits: int) -> None:
    x = np.random.default_rng(1).normal(size=5000)

    qt = quantize(x, bits, np.random.default_rng(2))
    y = dequantize(qt)

    step = (x.max() - x.min()) / ((1 << bits) - 1)
    assert qt.step == pytest.approx(step)
    assert np.max(np.abs(y - x)) <= step * (1 + 1e-9)
    assert y.min() == pytest.approx(x.min()) and y.max() == pytest.approx(x.max())
    assert qt.codes.nbytes == packed_bytes(5000, bits)  # 8 bits: 1 byte a value; 1 bit: 1/8


def test_a_constant_tensor_is_exact() -> None:
    np.testing.assert_array_equal(dequantize(quantize(np.full(9, 2.5), 1,
                                                      np.random.default_rng(0))), 2.5)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="bits"):
        quantize(np.ones(3), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-finite"):
        quantize(np.array([1.0, np.inf]), 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="code bytes"):
        unpack(np.zeros(3, np.uint8), 4, 7)


class _AlwaysOne:
    """A 'generator' whose uniform draws are all 1: rounding never goes up (floor quantisation)."""

    def random(self, size: int) -> np.ndarray:
        return np.ones(size)


X = np.array([0.0, 0.1, 0.33, 0.5, 0.77, 0.9, 1.0, -0.2, 0.41, 0.05])
DRAWS = 4000


def _mean_error_in_standard_errors(rng: object, bits: int) -> np.ndarray:
    """|mean of DRAWS decodings - x| in units of the stochastic quantiser's standard error."""
    decoded = np.stack([dequantize(quantize(X, bits, rng)) for _ in range(DRAWS)])  # type: ignore[arg-type]
    step = (X.max() - X.min()) / ((1 << bits) - 1)
    frac = (X - X.min()) / step % 1.0
    se = step * np.sqrt(frac * (1 - frac) / DRAWS)  # Bernoulli(frac) rounding, per coordinate
    err = np.abs(decoded.mean(axis=0) - X)
    return np.where(se > 0, err / np.maximum(se, 1e-300), np.where(err < 1e-12, 0.0, np.inf))


@pytest.mark.parametrize("bits", [1, 4])
def test_stochastic_rounding_is_unbiased(bits: int) -> None:
    z = _mean_error_in_standard_errors(np.random.default_rng(bits), bits)

    # 10 coordinates, each |z| < 4.5 (a false alarm has probability ~ 1e-4)
    assert np.all(z < 4.5), z


@pytest.mark.parametrize("bits", [1, 4])
def test_floor_rounding_fails_the_same_test(bits: int) -> None:
    z = _mean_error_in_standard_errors(_AlwaysOne(), bits)

    assert np.any(z > 4.5), z
