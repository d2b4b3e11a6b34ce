"""Configuration checks and the bit-width rule."""

import pytest

from fedcore.secagg.config import (
    Mode,
    RoundSpec,
    SecAggConfig,
    choose_bit_width,
    suggested_degree,
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", 0),
        ("max_clients", 0),
        ("clip", 0.0),
        ("clip", float("nan")),
        ("bit_width", 65),
    ],
)
def test_bad_value_is_named(field, value):
    args = {"threshold": 2, "max_clients": 10, "clip": 1.0, field: value}

    with pytest.raises(ValueError, match=field):
        SecAggConfig(**args)


def test_bit_width_too_small_for_clients():
    with pytest.raises(ValueError, match="choose_bit_width"):
        SecAggConfig(threshold=2, max_clients=1000, clip=1.0, bit_width=8)


def test_secagg_plus_threshold_bounded_by_degree():
    with pytest.raises(ValueError, match="degree"):
        SecAggConfig(threshold=6, max_clients=10, clip=1.0, mode=Mode.SECAGG_PLUS, degree=4)


@pytest.mark.parametrize(("clients", "precision"), [(1, 1), (10, 16), (1000, 20), (3, 40)])
def test_chosen_bit_width_cannot_wrap(clients, precision):
    bits = choose_bit_width(clients, precision)

    assert clients * (2**precision - 1) < 2**bits


def test_levels_times_clients_fits():
    config = SecAggConfig(threshold=2, max_clients=1000, clip=1.0, bit_width=32)

    assert config.levels * config.max_clients < 2**32


def test_threshold_above_clients_is_refused():
    config = SecAggConfig(threshold=5, max_clients=10, clip=1.0)

    with pytest.raises(ValueError, match="threshold"):
        RoundSpec(config=config, round_id=1, num_clients=4, dim=3)


def test_more_clients_than_configured_is_refused():
    config = SecAggConfig(threshold=2, max_clients=3, clip=1.0)

    with pytest.raises(ValueError, match="max_clients"):
        RoundSpec(config=config, round_id=1, num_clients=4, dim=3)


def test_suggested_degree_grows_like_log():
    assert suggested_degree(100) == 14
