"""Small contracts at the edges of the ledgers: a round's step is one round unless told
otherwise (the coordinator records `NoisyEncoding.step()` once per released round), and a
privacy budget is any positive finite ε, below 1 included, never NaN or zero."""

from __future__ import annotations

import math

import pytest

from fedcore.dp.budget import Budget
from fedcore.dp.distributed import DistributedNoise, skellam_epsilon
from fedcore.dp.distributed_accountant import DistributedAccountant, DistributedStep
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.secagg.config import SecAggConfig


def test_a_step_is_one_round_unless_told_and_a_rounds_step_prices_one_round() -> None:
    step = DistributedStep(kind=IntegerNoise.SKELLAM, noise_multiplier=2.0, l2_sensitivity=100.0,
                           dim=9)
    assert step.rounds == 1

    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=2.0, clip_norm=1.0),
                                       SecAggConfig(max_clients=4, threshold=2, clip=1.0,
                                                    bit_width=32), 9)
    accountant = DistributedAccountant()
    for _ in range(3):
        accountant.record(encoding.step())

    assert accountant.rounds == 3
    noise = DistributedNoise(noise_multiplier=2.0, l2_sensitivity=encoding.noise.l2_sensitivity,
                             min_survivors=1)
    assert accountant.epsilon(1e-5)[1] == pytest.approx(
        skellam_epsilon(noise, dim=9, rounds=3, delta=1e-5), rel=1e-9)


@pytest.mark.parametrize("epsilon", [1e-9, 0.5, 1.0, 7.5])
def test_any_positive_finite_budget_is_accepted(epsilon: float) -> None:
    assert Budget(epsilon=epsilon, delta=1e-5).epsilon == epsilon


@pytest.mark.parametrize("epsilon", [0.0, -0.5, math.nan])
def test_a_budget_of_no_epsilon_is_refused(epsilon: float) -> None:
    with pytest.raises(ValueError, match="budget epsilon"):
        Budget(epsilon=epsilon, delta=1e-5)


@pytest.mark.parametrize("delta", [1e-12, 0.999])
def test_a_budget_delta_just_inside_the_unit_interval_is_accepted(delta: float) -> None:
    assert Budget(epsilon=1.0, delta=delta).delta == delta
