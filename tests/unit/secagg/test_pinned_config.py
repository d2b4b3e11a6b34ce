"""A round's spec at its boundaries (found unpinned by benchmarks/mutation.py): a refusal is a
ValueError at construction, so no client or server machine is ever built from it."""

from __future__ import annotations

import pytest

from fedcore.secagg.config import RoundSpec, SecAggConfig

CONFIG = SecAggConfig(max_clients=4, threshold=3, clip=1.0)


@pytest.mark.parametrize("dim", [0, -1])
def test_a_round_of_no_coordinates_is_refused(dim: int) -> None:
    with pytest.raises(ValueError, match="dim must be >= 1"):
        RoundSpec(config=CONFIG, round_id=1, num_clients=4, dim=dim)


def test_the_smallest_round_is_accepted() -> None:
    spec = RoundSpec(config=CONFIG, round_id=0, num_clients=3, dim=1)

    assert (spec.dim, spec.num_clients, spec.signed) == (1, 3, False)


@pytest.mark.parametrize("clients", [0, 2, 5])
def test_a_round_outside_threshold_and_max_clients_is_refused(clients: int) -> None:
    with pytest.raises(ValueError, match="num_clients|threshold"):
        RoundSpec(config=CONFIG, round_id=1, num_clients=clients, dim=3)
