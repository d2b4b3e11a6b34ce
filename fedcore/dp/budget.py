"""A client's privacy budget: plan a DP-SGD task and decide before training whether it fits.

The would-be ε is computed on a copy of the accountant's history with the task's planned
entry appended (`PrivacyAccountant.epsilon_after`), so a refused task spends nothing. A
deployed `TorchApp` and a simulated client plan their tasks with the same `plan_task`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol

from fedcore.dp.opacus import HistoryEntry, noise_multiplier_for_target
from fedcore.protocol.messages import LocalDPConfig


class Spending(Protocol):
    """What a budget asks of an accountant (`PrivacyAccountant`, or the simulator's compact
    `fedcore.sim.privacy.CurveAccountant`)."""

    def epsilon(self, delta: float) -> float:
        """ε spent so far at `delta`."""
        ...

    def epsilon_after(self, entry: HistoryEntry, delta: float) -> float:
        """ε at `delta` once `entry` is added (nothing is recorded)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BudgetCheck:
    """The verdict on one planned task; `reason` is what a refusing client tells the coordinator."""

    allowed: bool
    epsilon_spent: float
    epsilon_after: float
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Total (ε, δ) a client is willing to spend over its whole life."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not self.epsilon > 0 or math.isnan(self.epsilon):
            raise ValueError(f"budget epsilon must be positive, got {self.epsilon}")
        if not 0 < self.delta < 1:
            raise ValueError(f"budget delta must be in (0, 1), got {self.delta}")

    def check(self, accountant: Spending, task: HistoryEntry) -> BudgetCheck:
        """Whether running `task` (see `plan_task`) stays within budget."""
        spent = accountant.epsilon(self.delta)
        after = accountant.epsilon_after(task, self.delta)
        if after <= self.epsilon:
            return BudgetCheck(allowed=True, epsilon_spent=spent, epsilon_after=after, reason="")
        reason = (
            f"privacy budget exceeded: this task would raise epsilon from {spent:.3f} to "
            f"{after:.3f} (delta={self.delta:g}), above the budget of {self.epsilon:g}"
        )
        return BudgetCheck(allowed=False, epsilon_spent=spent, epsilon_after=after, reason=reason)


def plan_task(dp: LocalDPConfig, *, batches: int, epochs: int, local_epochs: int) -> HistoryEntry:
    """The accountant entry of a DP-SGD task: `epochs` epochs of `batches` Poisson batches each.

    The noise multiplier is `dp.noise_multiplier`, or else the smallest that spends exactly
    `dp.target_epsilon` over `dp.planned_rounds` rounds of `local_epochs` epochs. Steps per
    epoch are Opacus' `DPDataLoader` length, `int(1 / sample_rate)`.

    Raises:
        ValueError: no noise multiplier reaches the target.
    """
    rate = 1 / batches
    noise = dp.noise_multiplier or _calibrated_noise(
        dp.target_epsilon, dp.delta, rate, dp.planned_rounds * local_epochs * batches
    )
    return HistoryEntry(noise_multiplier=noise, sample_rate=rate, steps=epochs * int(1 / rate))


@functools.lru_cache(maxsize=4096)
def _calibrated_noise(target: float, delta: float, rate: float, steps: int) -> float:
    return noise_multiplier_for_target(
        target_epsilon=target, delta=delta, sample_rate=rate, steps=steps
    )
