"""DP helpers at their boundaries, found unexercised by coverage of the dp tests: the smallest
legal value of each argument is accepted (with the value the formula gives), the next one down
refused with a ValueError."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.dp.distributed import (
    DistributedNoise,
    integer_l2_sensitivity,
    sample_discrete_gaussian,
    skellam_rdp,
)
from fedcore.dp.opacus import HistoryEntry
from fedcore.dp.user_level import (
    inclusion_probability,
    noise_multiplier_for_adaptive_clipping,
    selected_per_round,
)


def test_a_history_entry_takes_zero_noise_zero_steps_and_a_sample_rate_of_one() -> None:
    entry = HistoryEntry(noise_multiplier=0.0, sample_rate=1.0, steps=0)
    assert (entry.noise_multiplier, entry.sample_rate, entry.steps) == (0.0, 1.0, 0)


@pytest.mark.parametrize("fields", [{"noise_multiplier": -1e-9}, {"noise_multiplier": math.nan},
                                    {"noise_multiplier": math.inf}, {"sample_rate": 0.0},
                                    {"sample_rate": 1.0 + 1e-9}, {"steps": -1}])
def test_a_history_entry_out_of_range_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HistoryEntry(**{"noise_multiplier": 1.0, "sample_rate": 0.5, "steps": 1, **fields})  # type: ignore[arg-type]


def test_selected_per_round_rounds_up_and_needs_one_client() -> None:
    assert selected_per_round(1) == 1
    assert selected_per_round(10, 0.15) == 12  # ceil(11.5)
    assert selected_per_round(10, 0.0) == 10
    for clients, over in ((0, 0.0), (10, -0.01), (10, math.nan)):
        with pytest.raises(ValueError):
            selected_per_round(clients, over)


def test_inclusion_probability_at_its_bounds() -> None:
    assert inclusion_probability(selected=5, available=5) == 1.0
    assert inclusion_probability(selected=1, available=4) == 0.25
    assert inclusion_probability(selected=2, available=100, population=8) == 0.25  # the smaller
    assert inclusion_probability(selected=2, available=8, population=100) == 0.25
    assert inclusion_probability(selected=1, available=8, population=1) == 1.0
    for selected, available, population in ((0, 4, None), (5, 4, None), (1, 4, 0)):
        with pytest.raises(ValueError):
            inclusion_probability(selected=selected, available=available, population=population)


def test_adaptive_clipping_leaves_the_update_its_share_of_the_noise() -> None:
    # Andrew et al. 2021: z = (z_u^-2 + (2 sigma_b)^-2)^-1/2, so z_u = (z^-2 - (2 sigma_b)^-2)^-1/2
    z_u = noise_multiplier_for_adaptive_clipping(total_noise_multiplier=1.0, count_noise_std=2.0)
    assert z_u == pytest.approx(1 / math.sqrt(1 - 1 / 16))
    assert (z_u**-2 + (2 * 2.0) ** -2) ** -0.5 == pytest.approx(1.0)
    for z, sigma_b in ((1.0, 0.5), (1.0, 0.4), (0.0, 2.0), (1.0, 0.0)):  # sigma_b <= z / 2: none
        with pytest.raises(ValueError):
            noise_multiplier_for_adaptive_clipping(total_noise_multiplier=z, count_noise_std=sigma_b)


def test_distributed_noise_needs_positive_settings_and_a_survivor() -> None:
    assert DistributedNoise(noise_multiplier=1.0, l2_sensitivity=1.0, min_survivors=1)
    for fields in ({"l2_sensitivity": 0.0}, {"l2_sensitivity": math.inf},
                   {"noise_multiplier": 0.0}, {"min_survivors": 0}):
        with pytest.raises(ValueError):
            DistributedNoise(**{"noise_multiplier": 1.0, "l2_sensitivity": 1.0,  # type: ignore[arg-type]
                                "min_survivors": 1, **fields})


def test_the_integer_sensitivity_is_s_c_plus_half_root_d() -> None:
    assert integer_l2_sensitivity(clip_norm=2.0, scale=10.0, dim=1) == 20.5
    assert integer_l2_sensitivity(clip_norm=1.0, scale=3.0, dim=16) == 5.0
    for clip, scale, dim in ((0.0, 1.0, 1), (1.0, 0.0, 1), (1.0, 1.0, 0)):
        with pytest.raises(ValueError):
            integer_l2_sensitivity(clip_norm=clip, scale=scale, dim=dim)


def test_skellam_rdp_needs_a_coordinate_and_a_discrete_gaussian_a_real_sigma() -> None:
    noise = DistributedNoise(noise_multiplier=1.0, l2_sensitivity=10.0, min_survivors=1)
    assert np.all(skellam_rdp(noise, dim=1) > 0)
    with pytest.raises(ValueError):
        skellam_rdp(noise, dim=0)
    for sigma in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError):
            sample_discrete_gaussian(sigma, 3, np.random.default_rng(0))


def test_a_zero_step_entry_neither_shows_in_the_ledger_nor_splits_a_merge() -> None:
    from fedcore.dp.accountant import PrivacyAccountant

    a = HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=5)
    other_none = HistoryEntry(noise_multiplier=2.0, sample_rate=0.5, steps=0)
    accountant = PrivacyAccountant(history=[a, other_none, a])

    assert accountant.history == (HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=10),)
    assert accountant.epsilon_after(other_none, 1e-5) == accountant.epsilon(1e-5)
    accountant.record(other_none)
    assert accountant.steps == 10 and len(accountant.history) == 1


@pytest.mark.parametrize(("z", "d2", "dim"), [(10.0, 2.0, 1), (10.0, 2.0, 9), (0.5, 30.0, 100),
                                              (3.0, 1.5, 4)])
def test_skellam_rdp_is_the_documented_bound(z: float, d2: float, dim: int) -> None:
    """eps(a) <= a D2^2/(2 s^2) + min(((2a-1) D2^2 + 6 D1)/(4 s^4), 3 D1/(2 s^2)), s = z D2,
    D1 = min(sqrt(d) D2, D2^2) (Agarwal, Kairouz, Liu 2021, Thm 3.5), written out here."""
    from fedcore.dp.distributed import SKELLAM_ORDERS

    noise = DistributedNoise(noise_multiplier=z, l2_sensitivity=d2, min_survivors=1)
    s2 = (z * d2) ** 2
    d1 = min(math.sqrt(dim) * d2, d2 * d2)
    expected = [a * d2 * d2 / (2 * s2) + min(((2 * a - 1) * d2 * d2 + 6 * d1) / (4 * s2 * s2),
                                              3 * d1 / (2 * s2)) for a in SKELLAM_ORDERS]

    np.testing.assert_allclose(skellam_rdp(noise, dim=dim), expected, rtol=1e-12)
