"""The distributed-DP settings a secure round carries to its clients (`SecAggSetup.distributed_dp`).

What they mean and how clients turn them into integer noise: `fedcore.dp.secagg_noise` and
`fedcore.dp.distributed`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class IntegerNoise(enum.Enum):
    """Which integer distribution clients draw their share of noise from."""

    SKELLAM = "skellam"
    DISCRETE_GAUSSIAN = "discrete_gaussian"


@dataclass(frozen=True, slots=True, kw_only=True)
class DistributedDPConfig:
    """Distributed DP settings a secure round carries to its clients.

    Args:
        noise_multiplier: z; the noise std over t survivors is z·Δ₂.
        clip_norm: C, the L2 bound each client clips its update to.
        kind: the integer noise (SKELLAM, or DISCRETE_GAUSSIAN).
        delta: δ of the ε the coordinator reports.
    """

    noise_multiplier: float
    clip_norm: float
    kind: IntegerNoise = IntegerNoise.SKELLAM
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ValueError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ValueError(f"clip_norm must be > 0, got {self.clip_norm}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
