"""User-level DP-FedAvg accounting (McMahan et al. 2018): pure formulas, no state.

Guarantee (add/remove-one-client neighbours): each round, every client is selected
independently with probability q = clients_per_round / population (Poisson sampling), every
update is clipped to L2 norm C (`fedcore.aggregate.clip.Clip`), and Gaussian noise of std z·C
is added to the unweighted sum (`fedcore.aggregate.dp_noise.GaussianNoise`). One round is then
the subsampled Gaussian mechanism with noise multiplier z and rate q, and `rounds` rounds are
what Opacus' accountant composes. With a fixed number of clients per round (sampling without
replacement) the same number is the usual approximation, not a proof. With adaptive clipping
the clipped-count query shares the budget: see `noise_multiplier_for_adaptive_clipping`.

To track ε per round, record `user_level_entry(...)` in a `fedcore.dp.accountant.PrivacyAccountant`
kept in the coordinator's state directory after each round.
"""

from __future__ import annotations

import math

from fedcore.dp.opacus import HistoryEntry, Mechanism, epsilon, noise_multiplier_for_target


def user_level_entry(
    *, noise_multiplier: float, clients_per_round: int, population: int, rounds: int = 1
) -> HistoryEntry:
    """The accountant entry for `rounds` DP-FedAvg rounds."""
    if not 0 < clients_per_round <= population:
        raise ValueError(
            f"clients_per_round must be in [1, population={population}], got {clients_per_round}"
        )
    return HistoryEntry(
        noise_multiplier=noise_multiplier,
        sample_rate=clients_per_round / population,
        steps=rounds,
    )


def user_level_epsilon(
    *,
    noise_multiplier: float,
    clients_per_round: int,
    population: int,
    rounds: int,
    delta: float,
    mechanism: Mechanism = Mechanism.RDP,
) -> float:
    """User-level ε after `rounds` rounds at `delta`."""
    entry = user_level_entry(
        noise_multiplier=noise_multiplier,
        clients_per_round=clients_per_round,
        population=population,
        rounds=rounds,
    )
    return epsilon([entry], delta=delta, mechanism=mechanism)


def noise_multiplier_for_user_level(
    *,
    target_epsilon: float,
    delta: float,
    clients_per_round: int,
    population: int,
    rounds: int,
    mechanism: Mechanism = Mechanism.RDP,
) -> float:
    """The noise multiplier z reaching at most `target_epsilon` after `rounds` rounds."""
    entry = user_level_entry(
        noise_multiplier=1.0,
        clients_per_round=clients_per_round,
        population=population,
        rounds=rounds,
    )
    return noise_multiplier_for_target(
        target_epsilon=target_epsilon,
        delta=delta,
        sample_rate=entry.sample_rate,
        steps=rounds,
        mechanism=mechanism,
    )


def noise_multiplier_for_adaptive_clipping(
    total_noise_multiplier: float, count_noise_std: float
) -> float:
    """Noise multiplier z_Δ left for the update when the clipped count takes its share.

    Andrew et al. 2021, Thm 1: the update sum (sensitivity C, noise z_Δ·C) and the centred
    count (sensitivity 1/2, noise σ_b) together are one Gaussian mechanism with
    z = (z_Δ^-2 + (2σ_b)^-2)^(-1/2); account with z, noise the update with
    z_Δ = (z^-2 - (2σ_b)^-2)^(-1/2).

    Raises:
        ValueError: σ_b too small for z (the count alone would spend the budget); σ_b must
            exceed z/2, and about clients_per_round/20 is the paper's advice.
    """
    if total_noise_multiplier <= 0 or count_noise_std <= 0:
        raise ValueError("total_noise_multiplier and count_noise_std must be positive")
    rest = total_noise_multiplier**-2 - (2 * count_noise_std) ** -2
    if rest <= 0:
        raise ValueError(
            f"count_noise_std={count_noise_std} must exceed total_noise_multiplier/2="
            f"{total_noise_multiplier / 2}; raise it or the noise multiplier"
        )
    return 1 / math.sqrt(rest)
