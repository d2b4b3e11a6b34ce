"""Simulated time: how long each client takes and whether it drops out, drawn from a seed.

The driver feeds these times to the round engine as `now`, so deadlines, stragglers and
over-selection behave as in deployment while the run's wall time depends only on compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedcore.sim.population import mix_seeds


@dataclass(frozen=True, slots=True, kw_only=True)
class TimingModel:
    """Per-client speed and reliability.

    A client's task takes `examples * epochs * s_per_example * speed + latency_s` simulated
    seconds, where `speed` is lognormal with median 1 and log-std `speed_sigma` (fixed per
    client: slow devices stay slow). Each task is lost with probability `dropout`.
    """

    s_per_example: float = 1e-3
    speed_sigma: float = 0.5
    latency_s: float = 0.5
    dropout: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.s_per_example < 0 or self.speed_sigma < 0 or self.latency_s < 0:
            raise ValueError("timing parameters must be non-negative")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def speed(self, index: int) -> float:
        """The client's fixed slowness factor (1 is the median device)."""
        rng = np.random.default_rng(int(mix_seeds(self.seed, np.array([index], np.uint64))[0]))
        return float(rng.lognormal(0.0, self.speed_sigma))

    def task_seconds(self, index: int, examples: int, epochs: int) -> float:
        """Simulated seconds for one task of this client."""
        return examples * epochs * self.s_per_example * self.speed(index) + self.latency_s

    def drops(self, index: int, round_number: int, task: str) -> bool:
        """Whether this client's task of this round is lost."""
        if self.dropout == 0:
            return False
        rng = np.random.default_rng([self.seed, index, round_number, len(task), ord(task[0])])
        return bool(rng.random() < self.dropout)
