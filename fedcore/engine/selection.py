"""Seeded uniform client selection."""

from __future__ import annotations

import random
from collections.abc import Iterable


def round_rng(seed: int, round_number: int, purpose: str) -> random.Random:
    """A generator determined by (seed, round, purpose) alone, so runs are reproducible."""
    return random.Random(f"{seed}/{round_number}/{purpose}")


def select_clients(available: Iterable[str], count: int, rng: random.Random) -> list[str]:
    """`count` clients drawn uniformly without replacement; sorted input makes it reproducible."""
    pool = sorted(available)
    if count > len(pool):
        raise ValueError(f"cannot select {count} of {len(pool)} available clients")
    return rng.sample(pool, count)
