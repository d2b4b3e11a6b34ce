"""Budget checks happen before training, on a copy of the history."""

from __future__ import annotations

import pytest

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.budget import Budget
from fedcore.dp.opacus import HistoryEntry

TASK = HistoryEntry(noise_multiplier=1.0, sample_rate=0.05, steps=100)


def _spent_after(tasks: int) -> float:
    return PrivacyAccountant(history=[TASK] * tasks).epsilon(1e-5)


def test_task_within_budget_is_allowed():
    budget = Budget(epsilon=_spent_after(3), delta=1e-5)
    accountant = PrivacyAccountant(history=[TASK, TASK])

    check = budget.check(accountant, TASK)

    assert check.allowed
    assert check.reason == ""
    assert check.epsilon_after == pytest.approx(_spent_after(3))


def test_task_that_would_exceed_is_refused_with_a_reason():
    budget = Budget(epsilon=_spent_after(3) * 0.999, delta=1e-5)
    accountant = PrivacyAccountant(history=[TASK, TASK])

    check = budget.check(accountant, TASK)

    assert not check.allowed
    assert check.epsilon_spent == pytest.approx(_spent_after(2))
    assert "budget" in check.reason and f"{budget.epsilon:g}" in check.reason
    assert accountant.history == (HistoryEntry(noise_multiplier=1.0, sample_rate=0.05, steps=200),)


def test_client_at_its_budget_refuses_every_further_task():
    budget = Budget(epsilon=_spent_after(2), delta=1e-5)
    accountant = PrivacyAccountant()

    allowed = 0
    while budget.check(accountant, TASK).allowed:
        accountant.record(TASK)
        allowed += 1

    assert allowed == 2
    assert accountant.epsilon(1e-5) <= budget.epsilon


def test_zero_noise_task_is_always_refused():
    check = Budget(epsilon=100.0, delta=1e-5).check(
        PrivacyAccountant(), HistoryEntry(noise_multiplier=0.0, sample_rate=0.1, steps=1)
    )

    assert not check.allowed


@pytest.mark.parametrize("epsilon, delta", [(0.0, 1e-5), (-1.0, 1e-5), (1.0, 0.0), (1.0, 1.0)])
def test_bad_budget_is_rejected(epsilon: float, delta: float):
    with pytest.raises(ValueError):
        Budget(epsilon=epsilon, delta=delta)
