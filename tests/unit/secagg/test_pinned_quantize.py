"""The secure-aggregation quantiser is unbiased: the decoded mean of many clients sending the
same value is that value, within a few standard errors.

The worst-case error bound (one step per client) holds for floor or ceiling rounding too; only a
statistical test of the mean tells stochastic rounding from them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.quantize import Quantizer

CLIENTS, COORDINATES = 50, 200


def _quantizer() -> Quantizer:
    return Quantizer.from_config(SecAggConfig(max_clients=CLIENTS, threshold=26, clip=1.0, bit_width=12))


@pytest.mark.parametrize("value", [0.3, -0.77, 0.5])
def test_the_decoded_mean_of_many_clients_is_unbiased(value: float) -> None:
    q = _quantizer()
    rng = np.random.default_rng(17)
    total = np.zeros(COORDINATES, np.uint64)
    for _ in range(CLIENTS):
        total += q.quantize(np.full(COORDINATES, value), rng).astype(np.uint64)

    decoded = q.dequantize_sum(total, CLIENTS) / CLIENTS  # each coordinate: a mean of 50 clients

    step = 2 * q.clip / q.levels
    scaled = (value + q.clip) / step
    frac = scaled - math.floor(scaled)
    # one rounding is value +- step, a Bernoulli(frac) in units of step
    standard_error = step * math.sqrt(frac * (1 - frac) / (CLIENTS * COORDINATES))
    assert frac > 0.2 and frac < 0.8  # so that floor or ceiling rounding is many errors off
    assert abs(float(decoded.mean()) - value) < 4 * standard_error
    # and every client's rounding is to a neighbouring level, never further
    assert float(np.abs(decoded - value).max()) <= step


def test_roundings_differ_between_clients() -> None:
    q = _quantizer()
    rng = np.random.default_rng(2)

    words = {int(w) for _ in range(20) for w in q.quantize([0.3], rng)}

    scaled = (0.3 + q.clip) * q.levels / (2 * q.clip)
    assert words == {math.floor(scaled), math.floor(scaled) + 1}
