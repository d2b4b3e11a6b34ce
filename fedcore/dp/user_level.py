"""User-level DP-FedAvg accounting (McMahan et al. 2018): pure formulas, no state.

Guarantee (add/remove-one-client neighbours): every update is clipped to L2 norm C
(`fedcore.aggregate.clip.Clip`) and Gaussian noise of std z·C is added to the unweighted sum
(`fedcore.aggregate.dp_noise.GaussianNoise`). Round r is then the subsampled Gaussian mechanism
with noise multiplier z_r and the rate q_r at which any one client can be in that round, and a
run is the composition of its rounds, each at its own (q_r, z_r), which Opacus' RDP accountant
composes (`fedcore.dp.accountant.PrivacyAccountant` keeps that history).

Which q. The round engine draws `selected` clients uniformly among the `available` ones,
over-selection included: it asks ceil(m(1 + o)) clients and keeps the first m results, so a
client that is always fast is in the result whenever it is drawn, with probability
selected / available, not m / N. `inclusion_probability` therefore uses the selected count over
the clients available at that selection, per round (a round with fewer clients available is
priced at its own, larger rate; dividing by the largest number ever seen would understate it).
A declared population N is only a claim: it is used when it gives the larger, i.e. more
conservative, q (N < available means the claim is wrong, and the rate is capped at 1, which
holds whatever happened). Planning (`noise_multiplier_for_user_level`) has only N to go by, so
the ε a run reports may exceed its plan when fewer clients turn up: that is the honest figure.

Not a proof: the engine selects a fixed number without replacement, for which Poisson-sampling
accounting at the same rate is the usual approximation. With adaptive clipping the
clipped-count query shares the budget: see `noise_multiplier_for_adaptive_clipping`.
"""

from __future__ import annotations

import math

from fedcore.dp.opacus import HistoryEntry, Mechanism, epsilon, noise_multiplier_for_target


def selected_per_round(clients_per_round: int, over_selection: float = 0.0) -> int:
    """Clients a round of m asks to train: ceil(m(1 + o)), as `SelectionConfig.to_select` does
    when enough clients are available."""
    if clients_per_round < 1 or not over_selection >= 0:
        raise ValueError(f"clients_per_round must be >= 1 and over_selection >= 0, got "
                         f"{clients_per_round}, {over_selection}")
    return math.ceil(clients_per_round * (1 + over_selection))


def inclusion_probability(*, selected: int, available: int, population: int | None = None) -> float:
    """q for one round: `selected` / min(`available`, `population`), at most 1.

    Args:
        selected: clients drawn for the round, over-selection included.
        available: clients that could have been drawn at that selection.
        population: a declared population size, used only where it is smaller than `available`.

    Raises:
        ValueError: `selected` is not in [1, available], or `population` is not positive.
    """
    if not 1 <= selected <= available:
        raise ValueError(f"selected must be in [1, available={available}], got {selected}")
    if population is not None and population < 1:
        raise ValueError(f"population must be >= 1, got {population}")
    pool = available if population is None else min(available, population)
    return min(1.0, selected / pool)


def user_level_entry(
    *,
    noise_multiplier: float,
    clients_per_round: int,
    population: int,
    rounds: int = 1,
    over_selection: float = 0.0,
) -> HistoryEntry:
    """The planned accountant entry for `rounds` rounds of m = `clients_per_round` (with
    over-selection o, ceil(m(1 + o)) selected) among a population of N.

    Raises:
        ValueError: more clients selected per round than the population holds.
    """
    selected = selected_per_round(clients_per_round, over_selection)
    if selected > population:
        raise ValueError(
            f"clients_per_round={clients_per_round} with over_selection={over_selection} selects "
            f"{selected} clients per round, more than population={population}: lower them or "
            "declare the real population"
        )
    return HistoryEntry(
        noise_multiplier=noise_multiplier,
        sample_rate=selected / population,
        steps=rounds,
    )


def user_level_epsilon(
    *,
    noise_multiplier: float,
    clients_per_round: int,
    population: int,
    rounds: int,
    delta: float,
    over_selection: float = 0.0,
    mechanism: Mechanism = Mechanism.RDP,
) -> float:
    """Planned user-level ε after `rounds` rounds at `delta` (all clients of N available)."""
    entry = user_level_entry(
        noise_multiplier=noise_multiplier,
        clients_per_round=clients_per_round,
        population=population,
        rounds=rounds,
        over_selection=over_selection,
    )
    return epsilon([entry], delta=delta, mechanism=mechanism)


def noise_multiplier_for_user_level(
    *,
    target_epsilon: float,
    delta: float,
    clients_per_round: int,
    population: int,
    rounds: int,
    over_selection: float = 0.0,
    mechanism: Mechanism = Mechanism.RDP,
) -> float:
    """The noise multiplier z reaching at most `target_epsilon` after `rounds` rounds, if all
    N clients are available (fewer available raise q and the ε the run reports)."""
    entry = user_level_entry(
        noise_multiplier=1.0,
        clients_per_round=clients_per_round,
        population=population,
        rounds=rounds,
        over_selection=over_selection,
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
