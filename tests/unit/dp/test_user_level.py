"""User-level DP-FedAvg accounting: Opacus' RDP at the rate each round really had."""

from __future__ import annotations

import math

import pytest
from opacus.accountants import RDPAccountant

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.user_level import (
    inclusion_probability,
    noise_multiplier_for_adaptive_clipping,
    noise_multiplier_for_user_level,
    selected_per_round,
    user_level_entry,
    user_level_epsilon,
)

DELTA = 1e-6


def test_user_level_epsilon_equals_opacus_with_client_sampling_rate():
    reference = RDPAccountant()
    for _ in range(200):
        reference.step(noise_multiplier=1.2, sample_rate=100 / 10_000)

    got = user_level_epsilon(noise_multiplier=1.2, clients_per_round=100, population=10_000,
                             rounds=200, delta=DELTA)

    assert got == pytest.approx(reference.get_epsilon(delta=DELTA), rel=1e-12)


def test_per_round_accounting_in_a_persistent_accountant_matches_the_formula():
    accountant = PrivacyAccountant()
    per_round = []
    for _ in range(5):
        accountant.record(user_level_entry(noise_multiplier=1.0, clients_per_round=50,
                                           population=1000))
        per_round.append(accountant.epsilon(DELTA))

    assert per_round == sorted(per_round)
    assert per_round[-1] == pytest.approx(user_level_epsilon(
        noise_multiplier=1.0, clients_per_round=50, population=1000, rounds=5, delta=DELTA))


def test_calibrated_noise_reaches_the_target():
    z = noise_multiplier_for_user_level(target_epsilon=2.0, delta=DELTA, clients_per_round=100,
                                        population=10_000, rounds=500)

    eps = user_level_epsilon(noise_multiplier=z, clients_per_round=100, population=10_000,
                             rounds=500, delta=DELTA)
    assert 1.95 <= eps <= 2.0


def test_adaptive_split_composes_back_to_the_total_noise_multiplier():
    z_delta = noise_multiplier_for_adaptive_clipping(1.0, count_noise_std=5.0)

    assert z_delta > 1.0
    assert (z_delta**-2 + (2 * 5.0) ** -2) ** -0.5 == pytest.approx(1.0)


def test_adaptive_split_refuses_a_count_noise_that_spends_everything():
    with pytest.raises(ValueError, match="count_noise_std"):
        noise_multiplier_for_adaptive_clipping(4.0, count_noise_std=1.0)


def test_more_clients_than_population_is_refused():
    with pytest.raises(ValueError, match="clients_per_round"):
        user_level_entry(noise_multiplier=1.0, clients_per_round=11, population=10)


def test_full_participation_is_allowed():
    entry = user_level_entry(noise_multiplier=1.0, clients_per_round=10, population=10, rounds=3)

    assert entry.sample_rate == 1.0 and entry.steps == 3
    assert math.isfinite(user_level_epsilon(noise_multiplier=1.0, clients_per_round=10,
                                            population=10, rounds=3, delta=DELTA))


@pytest.mark.parametrize("selected, available, population, rate", [
    (15, 1000, None, 0.015),
    (15, 40, 1000, 15 / 40),     # fewer available than declared: the observed pool
    (15, 1000, 100, 0.15),       # a declared population below what is seen: the larger rate
    (15, 1000, 10, 1.0),         # a declaration the round itself disproves: capped at 1
    (40, 40, None, 1.0),
])
def test_inclusion_probability_is_the_largest_rate_consistent_with_the_round(
        selected: int, available: int, population: int | None, rate: float) -> None:
    assert inclusion_probability(selected=selected, available=available,
                                 population=population) == rate


@pytest.mark.parametrize("selected, available", [(0, 10), (11, 10)])
def test_a_selection_outside_the_available_clients_is_refused(selected: int, available: int) -> None:
    with pytest.raises(ValueError, match="available"):
        inclusion_probability(selected=selected, available=available)


def test_planning_counts_over_selected_clients() -> None:
    # ceil(10 · 1.5) = 15 of 1000 selected per round
    planned = user_level_epsilon(noise_multiplier=1.0, clients_per_round=10, population=1000,
                                 rounds=100, delta=1e-5, over_selection=0.5)

    reference = RDPAccountant()
    reference.history = [(1.0, 15 / 1000, 100)]
    assert selected_per_round(10, 0.5) == 15
    assert planned == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-12)


def test_over_selection_beyond_the_population_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="over_selection=0.5 selects 15 clients"):
        user_level_entry(noise_multiplier=1.0, clients_per_round=10, population=12,
                         over_selection=0.5)


def test_the_issues_example_reported_1_21_where_the_real_rate_gives_1_52_and_31_2() -> None:
    # arrange: z = 1, m = 10, o = 0.5, N = 1000 declared, 100 rounds, δ = 1e-5
    def eps(q: float) -> float:
        acc = RDPAccountant()
        acc.history = [(1.0, q, 100)]
        return float(acc.get_epsilon(delta=1e-5))

    old = eps(10 / 1000)
    all_available = eps(inclusion_probability(selected=15, available=1000, population=1000))
    forty_available = eps(inclusion_probability(selected=15, available=40, population=1000))

    assert (round(old, 2), round(all_available, 2), round(forty_available, 1)) == (1.21, 1.52, 31.2)
