"""A client's privacy budget: decide before training whether the next task still fits.

The would-be ε is computed on a copy of the accountant's history with the task's planned
entry appended (`PrivacyAccountant.epsilon_after`), so a refused task spends nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from fedcore.dp.opacus import HistoryEntry


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
        """Whether running `task` (see `fedcore.dp.opacus.plan_local_task`) stays within budget."""
        spent = accountant.epsilon(self.delta)
        after = accountant.epsilon_after(task, self.delta)
        if after <= self.epsilon:
            return BudgetCheck(allowed=True, epsilon_spent=spent, epsilon_after=after, reason="")
        reason = (
            f"privacy budget exceeded: this task would raise epsilon from {spent:.3f} to "
            f"{after:.3f} (delta={self.delta:g}), above the budget of {self.epsilon:g}"
        )
        return BudgetCheck(allowed=False, epsilon_spent=spent, epsilon_after=after, reason=reason)
