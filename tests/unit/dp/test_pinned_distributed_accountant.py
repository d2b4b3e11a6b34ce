"""The distributed-DP accountant's paths coverage of the dp tests found unexercised: step
settings at their boundaries, discrete-Gaussian rounds priced as Gaussian RDP (and reported as
an approximation), merging only consecutive rounds of one setting, and the checkpoint format's
round trip and refusals."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from fedcore.dp.distributed_accountant import (
    APPROX_KEY,
    EXACT_KEY,
    SKELLAM_ORDERS,
    DistributedAccountant,
    DistributedStep,
    steps_from_json,
    steps_to_json,
)
from fedcore.protocol.distributed_dp import IntegerNoise

SK, DG = IntegerNoise.SKELLAM, IntegerNoise.DISCRETE_GAUSSIAN


@pytest.mark.parametrize("field", ["noise_multiplier", "l2_sensitivity"])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_a_step_needs_a_positive_finite_noise_and_sensitivity(field: str, bad: float) -> None:
    settings = {"noise_multiplier": 1.0, "l2_sensitivity": 10.0, field: bad}
    with pytest.raises(ValueError):
        DistributedStep(kind=SK, dim=3, **settings)  # type: ignore[arg-type]


def test_one_coordinate_and_one_round_are_the_least_a_step_may_have() -> None:
    assert DistributedStep(kind=SK, noise_multiplier=1.0, l2_sensitivity=1.0, dim=1,
                           rounds=1).rounds == 1
    for dim, rounds in ((0, 1), (1, 0)):
        with pytest.raises(ValueError):
            DistributedStep(kind=SK, noise_multiplier=1.0, l2_sensitivity=1.0, dim=dim,
                            rounds=rounds)


def test_discrete_gaussian_rounds_cost_the_gaussian_rdp_and_are_an_approximation() -> None:
    step = DistributedStep(kind=DG, noise_multiplier=2.0, l2_sensitivity=50.0, dim=10, rounds=3)

    # the Gaussian mechanism at noise multiplier z: alpha / (2 z^2) per round
    np.testing.assert_allclose(step.rdp(), 3 * np.asarray(SKELLAM_ORDERS) / (2 * 2.0**2),
                               rtol=1e-9)
    accountant = DistributedAccountant([step])
    key, epsilon = accountant.epsilon(1e-5)
    assert key == APPROX_KEY and not accountant.exact
    assert 0 < epsilon < math.inf


def test_no_rounds_cost_nothing_and_skellam_rounds_are_exact() -> None:
    assert DistributedAccountant().epsilon(1e-5) == (EXACT_KEY, 0.0)
    accountant = DistributedAccountant([DistributedStep(kind=SK, noise_multiplier=1.0,
                                                        l2_sensitivity=100.0, dim=5)])
    key, epsilon = accountant.epsilon(1e-5)
    assert key == EXACT_KEY and accountant.exact and epsilon > 0


def test_only_consecutive_rounds_at_one_setting_merge() -> None:
    a = DistributedStep(kind=SK, noise_multiplier=1.0, l2_sensitivity=100.0, dim=5)
    b = DistributedStep(kind=SK, noise_multiplier=1.5, l2_sensitivity=100.0, dim=5)
    accountant = DistributedAccountant([a, a, b, b, b, a])

    assert accountant.steps == (replace(a, rounds=2), replace(b, rounds=3), a)
    assert accountant.rounds == 6
    # merged or not, the price is that of six rounds
    single = DistributedAccountant()
    for step in (a, a, b, b, b, a):
        single._steps.append(step)  # the unmerged history, for comparison
    assert accountant.epsilon(1e-5)[1] == pytest.approx(single.epsilon(1e-5)[1], rel=1e-9)


def test_the_checkpoint_format_round_trips() -> None:
    steps = (DistributedStep(kind=SK, noise_multiplier=1.0, l2_sensitivity=100.0, dim=5,
                             rounds=4),
             DistributedStep(kind=DG, noise_multiplier=0.5, l2_sensitivity=3.0, dim=1))

    assert steps_from_json(steps_to_json(steps)) == steps


@pytest.mark.parametrize("items", [
    {"kind": "skellam"},  # not a list
    [{"kind": "skellam", "noise_multiplier": 1.0, "l2_sensitivity": 1.0, "dim": 5}],  # no rounds
    [{"kind": "skellam", "noise_multiplier": 1.0, "l2_sensitivity": 1.0, "dim": True,
      "rounds": 1}],
    [{"kind": "skellam", "noise_multiplier": 1.0, "l2_sensitivity": 1.0, "dim": 5.0,
      "rounds": 1}],
])
def test_a_bad_history_entry_is_a_value_error(items: object) -> None:
    with pytest.raises(ValueError):
        steps_from_json(items)
