"""The numeric bounds of secure aggregation, against the formulas their docstrings state:
levels = min((2**b - 1) // max_clients, 2**52), so max_clients * levels never wraps; every
config and round-spec limit at the last value refused and the first accepted; when the graph
counts as complete; the suggested degrees; and the signed-round safety bounds
(U = n or min(n, 3k/2 + 1); t > U/2, and t > 2n/3 on a complete graph; colluders
2t - U - 1), with `check_signed` refusing exactly below the least threshold."""

from __future__ import annotations

import math

import pytest

from fedcore.secagg.config import (
    MAX_EXACT_LEVELS,
    Mode,
    RoundSpec,
    SecAggConfig,
    suggested_degree,
    suggested_signed_degree,
)
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.safety import (
    UnsafeRound,
    check_signed,
    holder_union,
    least_signed_threshold,
    tolerated_colluders,
)


def _config(**fields: object) -> SecAggConfig:
    settings: dict[str, object] = {"threshold": 1, "max_clients": 10, "clip": 1.0, **fields}
    return SecAggConfig(**settings)  # type: ignore[arg-type]


def _plus(n: int, degree: int, threshold: int = 1) -> SecAggConfig:
    return _config(max_clients=n, threshold=threshold, mode=Mode.SECAGG_PLUS, degree=degree)


# ------------------------------------------------------------------ config
@pytest.mark.parametrize(("bit_width", "clients"), [(1, 1), (8, 3), (12, 50), (32, 7), (40, 1000),
                                                    (52, 1), (53, 1), (53, 2), (64, 1), (64, 3)])
def test_levels_are_the_most_that_max_clients_can_sum_below_2_to_the_b(
    bit_width: int, clients: int
) -> None:
    levels = _config(bit_width=bit_width, max_clients=clients).levels
    assert levels == min((2**bit_width - 1) // clients, 2**52)
    assert clients * levels < 2**bit_width
    assert levels == 2**52 or clients * (levels + 1) >= 2**bit_width  # the most that fits


def test_levels_stop_where_float64_stops_being_exact() -> None:
    assert MAX_EXACT_LEVELS == 2**52
    assert float(MAX_EXACT_LEVELS) + 1 != float(MAX_EXACT_LEVELS)  # still exact at the cap
    assert _config(bit_width=64, max_clients=1).levels == 2**52
    assert _config(bit_width=52, max_clients=1).levels == 2**52 - 1


def test_the_smallest_bit_width_for_the_clients_is_accepted_and_one_less_refused() -> None:
    for clients in (1, 2, 3, 4, 7, 8):
        least = max(1, math.ceil(math.log2(clients + 1)))  # 2**b - 1 >= clients
        assert _config(bit_width=least, max_clients=clients).levels == (2**least - 1) // clients
        if least > 1:
            with pytest.raises(ValueError):
                _config(bit_width=least - 1, max_clients=clients)


@pytest.mark.parametrize("clip", [5e-324, 1e-9, 1e300])
def test_any_positive_finite_clip_is_accepted(clip: float) -> None:
    assert _config(clip=clip).clip == clip


@pytest.mark.parametrize("clip", [-1.0, -0.0, float("-inf")])
def test_a_negative_clip_is_refused(clip: float) -> None:
    with pytest.raises(ValueError):
        _config(clip=clip)


@pytest.mark.parametrize(("degree", "even", "largest_threshold"), [(2, 2, 3), (3, 4, 5), (4, 4, 5),
                                                                    (7, 8, 9)])
def test_secagg_plus_thresholds_go_up_to_the_even_degree_plus_one(
    degree: int, even: int, largest_threshold: int
) -> None:
    config = _plus(20, degree, largest_threshold)
    assert config.even_degree == even
    with pytest.raises(ValueError):
        _plus(20, degree, largest_threshold + 1)
    assert _config(threshold=50, max_clients=60, degree=1).mode is Mode.FULL  # unchecked in FULL


@pytest.mark.parametrize(("degree", "clients", "complete"), [(4, 5, True), (4, 6, False),
                                                             (3, 5, True), (3, 6, False),
                                                             (6, 7, True), (6, 8, False)])
def test_a_sparse_graph_is_complete_once_the_degree_reaches_n_minus_1(
    degree: int, clients: int, complete: bool
) -> None:
    config = _plus(20, degree)
    assert config.complete_for(clients) is complete
    spec = RoundSpec(config=config, round_id=1, num_clients=clients, dim=1)
    assert spec.complete_graph is complete
    signed = RoundSpec(config=config, round_id=1, num_clients=clients, dim=1,
                       identities=(bytes(32),) * clients)
    assert signed.committed_graph is (not complete)
    assert not spec.committed_graph  # unsigned rounds take the setup's seed
    assert _config(max_clients=20).complete_for(clients)


@pytest.mark.parametrize(("n", "degree"), [(1, 2), (2, 2), (3, 4), (4, 4), (5, 6), (8, 6),
                                           (9, 8), (16, 8), (17, 10), (100, 14), (1024, 20)])
def test_suggested_degree_is_twice_the_ceiling_of_log2_n_and_at_least_2(n: int,
                                                                         degree: int) -> None:
    assert suggested_degree(n) == degree
    assert suggested_signed_degree(n) == 2 * degree


def test_a_round_spec_takes_one_to_max_clients_clients() -> None:
    config = _config(threshold=1, max_clients=4)
    for clients in (1, 4):
        spec = RoundSpec(config=config, round_id=0, num_clients=clients, dim=1)
        assert list(spec.clients) == list(range(1, clients + 1))
    for clients in (0, 5):
        with pytest.raises(ValueError):
            RoundSpec(config=config, round_id=0, num_clients=clients, dim=1)
    three = _config(threshold=3, max_clients=4)
    assert RoundSpec(config=three, round_id=0, num_clients=3, dim=1).num_clients == 3
    with pytest.raises(ValueError):
        RoundSpec(config=three, round_id=0, num_clients=2, dim=1)


# ------------------------------------------------------------------ safety
@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 9, 10, 30])
def test_on_a_complete_graph_u_is_n_and_t_must_exceed_two_thirds_of_n(n: int) -> None:
    config = _config(max_clients=max(n, 2))
    assert holder_union(config, n) == n
    least = least_signed_threshold(config, n)
    assert least == min(n, 2 * n // 3 + 1)
    assert 3 * least > 2 * n and 3 * (least - 1) <= 2 * n  # the least above two thirds


@pytest.mark.parametrize(("n", "degree", "union", "least"), [
    (20, 2, 4, 3),     # k = 2: U = 2 + 1 + 1, and 2t > 4 needs 3 = k + 1
    (20, 4, 7, 4),     # U = 7: t = 4
    (20, 6, 10, 6),    # U = 10: t = 6
    (40, 12, 19, 10),  # U = 19: t = 10 (2(k+1)/3 = 8.7 is lower)
    (200, 16, 25, 13),
    (11, 8, 11, 7),    # U capped at n = 11 (3k/2 + 1 = 13): t = 6 by U, 7 by 2(k+1)/3
    (10, 8, 10, 7),    # k = n - 2: U = n = 10, t = 6 by U, but t > 2 * 9 / 3 needs 7
])
def test_on_a_harary_graph_u_is_three_halves_k_plus_one_and_t_exceeds_half_of_it(
    n: int, degree: int, union: int, least: int
) -> None:
    config = _plus(n, degree)
    assert holder_union(config, n) == union
    assert least_signed_threshold(config, n) == least


@pytest.mark.parametrize(("n", "degree", "threshold", "colluders"), [
    (20, 4, 4, 0), (20, 4, 5, 2), (20, 6, 7, 3), (200, 16, 13, 0), (200, 16, 17, 8),
    (20, 4, 2, 0), (20, 4, 3, 0),  # below the least threshold: none, never negative
])
def test_tolerated_colluders_is_2t_minus_u_minus_1(n: int, degree: int, threshold: int,
                                                   colluders: int) -> None:
    assert tolerated_colluders(_plus(n, degree, threshold), n) == colluders


def test_tolerated_colluders_on_a_complete_graph_uses_u_equal_n() -> None:
    assert tolerated_colluders(_config(threshold=7, max_clients=9), 9) == 4
    assert tolerated_colluders(_config(threshold=5, max_clients=9), 9) == 0


def _signed(config: SecAggConfig, n: int) -> RoundSpec:
    return RoundSpec(config=config, round_id=1, num_clients=n, dim=1,
                     identities=(bytes(32),) * n)


@pytest.mark.parametrize(("n", "mode", "degree"), [(3, Mode.FULL, 0), (6, Mode.FULL, 0),
                                                   (9, Mode.FULL, 0), (20, Mode.SECAGG_PLUS, 4),
                                                   (40, Mode.SECAGG_PLUS, 12),
                                                   (10, Mode.SECAGG_PLUS, 8)])
def test_check_signed_refuses_exactly_below_the_least_threshold(n: int, mode: Mode,
                                                                degree: int) -> None:
    base = _config(max_clients=n, mode=mode, degree=degree)
    least = least_signed_threshold(base, n)

    check_signed(_signed(_config(max_clients=n, mode=mode, degree=degree, threshold=least), n))
    if least > 1:
        low = _config(max_clients=n, mode=mode, degree=degree, threshold=least - 1)
        with pytest.raises(UnsafeRound, match=f"t >= {least}") as caught:
            check_signed(_signed(low, n))
        assert isinstance(caught.value, SecAggError) and isinstance(caught.value, ValueError)


def test_a_config_defaults_to_32_bit_full_mode_without_a_degree() -> None:
    config = SecAggConfig(threshold=2, max_clients=3, clip=1.0)
    assert (config.bit_width, config.mode, config.degree) == (32, Mode.FULL, 0)
    assert config.levels == (2**32 - 1) // 3
    assert RoundSpec(config=config, round_id=0, num_clients=3, dim=1).graph_seed == bytes(32)
