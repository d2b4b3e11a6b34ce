"""A secure round's threshold: in SECAGG_PLUS the fraction counts within a neighbourhood of
degree + 1 clients (the client itself included), in FULL mode within the round."""

from __future__ import annotations

import pytest

from fedcore.engine.config import SecureAggregationConfig
from fedcore.secagg.config import Mode


@pytest.mark.parametrize(("fraction", "expected"), [(0.5, 3), (1.0, 5), (0.2, 1)])
def test_the_sparse_threshold_counts_a_neighbourhood_of_degree_plus_one(
        fraction: float, expected: int) -> None:
    config = SecureAggregationConfig(mode=Mode.SECAGG_PLUS, degree=4, max_clients=50,
                                     threshold_fraction=fraction)
    round_config = config.for_round(20)
    assert round_config.even_degree == 4 and not round_config.complete_for(20)
    assert round_config.threshold == expected


def test_the_full_threshold_counts_the_round() -> None:
    config = SecureAggregationConfig(max_clients=50, threshold_fraction=0.5)
    assert config.for_round(20).threshold == 10
    assert config.for_round(1).threshold == 1
