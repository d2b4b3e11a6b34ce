"""`NoisyEncoding.encode` quantises the update clipped to L2 norm at most C, never above.

The sensitivity Δ₂ = s·C + √d (fedcore.dp.secagg_noise) holds only if the vector handed to the
quantiser has norm <= C: an update above C is scaled onto (just inside) the C-ball along its
own direction, one inside it is passed as it is, and the weight slot is always the clip range c.
Observed at the quantiser's input, where no rounding or noise blurs it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.quantize import Quantizer

SECAGG = SecAggConfig(max_clients=10, threshold=4, clip=2.0, bit_width=32)
DIM = 51
C = 0.3


@pytest.fixture
def quantised(monkeypatch: pytest.MonkeyPatch) -> list[npt.NDArray[np.float64]]:
    seen: list[npt.NDArray[np.float64]] = []
    real = Quantizer.quantize

    def spy(self: Quantizer, vector: npt.NDArray[np.float64], rng: np.random.Generator) -> object:
        seen.append(np.array(vector, dtype=np.float64))
        return real(self, vector, rng)

    monkeypatch.setattr(Quantizer, "quantize", spy)
    return seen


@pytest.mark.parametrize("factor", [1 + 1e-7, 1.5, 7.0, 1e6])
def test_an_update_above_c_is_quantised_on_the_c_ball_along_its_direction(
        factor: float, quantised: list[npt.NDArray[np.float64]]) -> None:
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=0.5, clip_norm=C),
                                       SECAGG, DIM)
    direction = np.random.default_rng(1).normal(size=DIM - 1)
    update = direction / np.linalg.norm(direction) * C * factor

    encoding.encode(update, np.random.default_rng(2))

    (vector,) = quantised
    values = vector[:-1]
    norm = float(np.linalg.norm(values))
    assert norm <= C  # never above: the sensitivity bound holds
    assert norm >= C * (1 - 1e-8)  # and no more shrunk than a rounding margin
    np.testing.assert_allclose(values / norm, update / np.linalg.norm(update), rtol=1e-9)
    assert vector[-1] == SECAGG.clip  # the weight slot: weight 1 times c


def test_an_update_within_c_is_quantised_as_it_is(
        quantised: list[npt.NDArray[np.float64]]) -> None:
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=0.5, clip_norm=C),
                                       SECAGG, DIM)
    update = np.linspace(-0.04, 0.05, DIM - 1)
    assert np.linalg.norm(update) < C

    encoding.encode(update, np.random.default_rng(3))

    (vector,) = quantised
    np.testing.assert_array_equal(vector[:-1], update)
    assert vector[-1] == SECAGG.clip
