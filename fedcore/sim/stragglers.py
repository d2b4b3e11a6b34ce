"""Stragglers as in FedProx (Li et al. 2020, section 5.2, "systems heterogeneity").

Each training round, exactly `round(fraction * selected)` of the selected clients, drawn from
(seed, round), are stragglers: by the round's deadline one finishes only x of the E local
epochs asked, x uniform in 1..E-1 (the authors' code draws `randint(1, E)`). What becomes of
that work is the algorithm's choice, not the simulator's:

- `accept_partial_work=True` (FedProx): the straggler stops after x epochs and its update
  arrives just before the deadline, to be aggregated like any other;
- `accept_partial_work=False` (FedAvg in the paper): it would need E epochs, so it misses
  the deadline and the round engine closes the round without it.

With E = 1 a straggler finishes nothing by the deadline, whichever the choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PARTIAL_ARRIVAL = 0.99  # share of the time left at which a straggler sends its partial work


@dataclass(frozen=True, slots=True, kw_only=True)
class StragglerModel:
    """Which selected clients straggle in a round, and how many epochs each manages."""

    fraction: float = 0.0
    accept_partial_work: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"straggler fraction must be in [0, 1], got {self.fraction}")

    def epochs_done(
        self, clients: Sequence[str], round_number: int, local_epochs: int
    ) -> dict[str, int]:
        """The round's stragglers among `clients` (in a fixed order) and the epochs each
        completes by the deadline (0 to E-1)."""
        count = round(self.fraction * len(clients))
        if count == 0:
            return {}
        rng = np.random.default_rng([self.seed, round_number])
        chosen = rng.choice(len(clients), size=count, replace=False)
        done = rng.integers(1, local_epochs, size=count) if local_epochs > 1 else [0] * count
        return {clients[int(i)]: int(k) for i, k in zip(chosen, done)}

    def partial_work(
        self, clients: Sequence[str], round_number: int, local_epochs: int
    ) -> tuple[dict[str, int], set[str]]:
        """(epochs of the stragglers whose partial work counts, clients that miss the deadline)."""
        done = self.epochs_done(clients, round_number, local_epochs)
        kept = {c: k for c, k in done.items() if k > 0 and self.accept_partial_work}
        return kept, set(done) - set(kept)
