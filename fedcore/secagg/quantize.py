"""Floats <-> integers mod 2**b: clipping, unbiased stochastic rounding, and the way back.

Guarantee: each coordinate x is clipped to [-c, c] and mapped to an integer q in [0, L]
(L = `SecAggConfig.levels`) with E[q] = (x + c) * L / (2c), so the decoded sum is an
unbiased estimate of the sum of the clipped inputs; each client adds at most one step,
2c / L, of error per coordinate. Because the sum of `max_clients` such integers is at most
max_clients * L < 2**b, the modular sum never wraps and decodes exactly.

Weighted averaging: a client sends w * x with w in [0, 1] (e.g. its example count divided
by the round's maximum) and one extra coordinate holding w * c; the clip range then bounds
w * x, so a client's raw x is clipped at c / w in effect only if it exceeded c anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.packing import word_dtype

Floats = npt.NDArray[np.floating]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantizer:
    """Maps floats in [-clip, clip] to integers in [0, levels] and sums back to floats."""

    clip: float
    levels: int
    bit_width: int

    @classmethod
    def from_config(cls, config: SecAggConfig) -> Quantizer:
        """The quantizer a configuration implies."""
        return cls(clip=config.clip, levels=config.levels, bit_width=config.bit_width)

    def quantize(
        self, values: npt.ArrayLike, rng: np.random.Generator
    ) -> npt.NDArray[np.unsignedinteger]:
        """Clip and stochastically round to integers in [0, levels] (word dtype of b).

        `rng` decides each rounding (one uniform per value); a client keeps it secret, and in
        production draws it from a CSPRNG (`fedcore.dp.secure_random.secure_generator`).

        Raises:
            ValueError: when a value is not finite.
        """
        x = np.asarray(values, dtype=np.float64).ravel()
        if not np.isfinite(x).all():
            raise ValueError("cannot quantize non-finite values")
        scaled = (np.clip(x, -self.clip, self.clip) + self.clip) * (self.levels / (2 * self.clip))
        floor = np.floor(scaled)
        rounded = floor + (rng.random(x.size) < (scaled - floor))
        words: npt.NDArray[np.unsignedinteger] = np.minimum(rounded, self.levels).astype(
            word_dtype(self.bit_width)
        )
        return words

    def dequantize_sum(self, total: npt.NDArray[np.unsignedinteger], count: int) -> Floats:
        """Map the integer sum of `count` clients' quantised vectors to the float sum."""
        step = 2 * self.clip / self.levels
        return total.astype(np.float64) * step - count * self.clip


def append_weight(weighted_update: npt.ArrayLike, weight: float, *, clip: float) -> Floats:
    """The vector a client quantises for weighted FedAvg: [w * x..., w * clip].

    Args:
        weighted_update: w * x, already multiplied by the weight.
        weight: w in [0, 1] (normalise example counts by the round's maximum).
        clip: the configured clip range c.

    Raises:
        ValueError: when the weight is outside [0, 1].
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    vector = np.asarray(weighted_update, dtype=np.float64).ravel()
    return np.concatenate([vector, [weight * clip]])


def split_weight(total: Floats, *, clip: float) -> tuple[Floats, float]:
    """From the decoded sum of `append_weight` vectors: (sum of w * x, sum of w)."""
    return total[:-1], float(total[-1]) / clip
