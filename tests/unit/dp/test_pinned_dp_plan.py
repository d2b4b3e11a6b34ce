"""`plan_task`: the accountant entry of one DP-SGD task, against Opacus' accountant.

A task of `epochs` epochs over `batches` Poisson batches has sample rate 1/batches and
epochs * int(batches) steps (Opacus' DPDataLoader length). Its noise multiplier is the
configured one, or else the smallest that spends `target_epsilon` over the whole plan
(planned_rounds x local_epochs x batches steps): Opacus' RDPAccountant then reports within
its 0.01 tolerance below the target for the plan, not for this one task.
"""

from __future__ import annotations

import pytest
from opacus.accountants import RDPAccountant

from fedcore.dp.budget import Budget, plan_task
from fedcore.dp.opacus import HistoryEntry
from fedcore.protocol.messages import LocalDPConfig


def _opacus_epsilon(sigma: float, rate: float, steps: int, delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = [(sigma, rate, steps)]
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize(("batches", "epochs"), [(4, 1), (7, 3), (10, 2)])
def test_a_fixed_noise_task_is_epochs_times_batches_steps_at_rate_one_over_batches(
        batches: int, epochs: int) -> None:
    dp = LocalDPConfig(noise_multiplier=1.3)

    entry = plan_task(dp, batches=batches, epochs=epochs, local_epochs=5)

    assert entry == HistoryEntry(noise_multiplier=1.3, sample_rate=1 / batches,
                                 steps=epochs * batches)


@pytest.mark.parametrize(("target", "rounds", "local_epochs", "batches"), [
    (2.0, 5, 1, 10), (1.0, 3, 2, 8), (4.0, 20, 1, 5)])
def test_a_target_sets_the_noise_that_spends_it_over_the_whole_plan(
        target: float, rounds: int, local_epochs: int, batches: int) -> None:
    dp = LocalDPConfig(target_epsilon=target, planned_rounds=rounds, delta=1e-5)

    entry = plan_task(dp, batches=batches, epochs=1, local_epochs=local_epochs)

    assert entry.sample_rate == 1 / batches and entry.steps == batches
    plan_steps = rounds * local_epochs * batches
    spent = _opacus_epsilon(entry.noise_multiplier, 1 / batches, plan_steps, 1e-5)
    assert target - 0.01 <= spent <= target
    # the noise for one task alone would be smaller: the plan is what is calibrated
    assert _opacus_epsilon(entry.noise_multiplier, 1 / batches, batches, 1e-5) < 0.8 * target


def test_the_plan_uses_its_own_delta() -> None:
    loose = plan_task(LocalDPConfig(target_epsilon=2.0, planned_rounds=5, delta=1e-3),
                      batches=10, epochs=1, local_epochs=1)
    tight = plan_task(LocalDPConfig(target_epsilon=2.0, planned_rounds=5, delta=1e-7),
                      batches=10, epochs=1, local_epochs=1)

    assert tight.noise_multiplier > loose.noise_multiplier * 1.1
    assert _opacus_epsilon(tight.noise_multiplier, 0.1, 50, 1e-7) <= 2.0


def test_a_planned_run_fits_its_target_budget_task_by_task() -> None:
    from fedcore.dp.accountant import PrivacyAccountant

    dp = LocalDPConfig(target_epsilon=1.5, planned_rounds=4, delta=1e-5)
    budget = Budget(epsilon=dp.target_epsilon, delta=dp.delta)
    accountant = PrivacyAccountant()
    task = plan_task(dp, batches=6, epochs=1, local_epochs=1)

    allowed = 0
    while budget.check(accountant, task).allowed and allowed < 10:
        accountant.record(task)
        allowed += 1

    assert allowed == 4  # exactly the planned rounds, then refused
    assert 1.5 - 0.01 <= accountant.epsilon(1e-5) <= 1.5
