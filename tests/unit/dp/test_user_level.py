"""User-level DP-FedAvg accounting: Opacus' RDP with q = clients per round / population."""

from __future__ import annotations

import math

import pytest
from opacus.accountants import RDPAccountant

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.user_level import (
    noise_multiplier_for_adaptive_clipping,
    noise_multiplier_for_user_level,
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
