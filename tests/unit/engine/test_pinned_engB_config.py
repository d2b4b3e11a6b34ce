"""The engine's settings where a mutation sample found them unpinned: each selection and
secure-aggregation check refuses the last bad value (also alone, not only beside another bad
one) and takes the first good one; the documented defaults (docs/deployment.md,
docs/reliability.md) hold, by the behaviour they drive where one is observable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.config import Limits, SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.registry import Registry
from fedcore.engine.secure_round import SecureRound
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.protocol.messages import Task
from fedcore.protocol.specs import spec_of
from fedcore.secagg.config import Mode, suggested_degree, suggested_signed_degree
from fedcore.secagg.roster import Roster
from fedcore.secagg.safety import least_signed_threshold
from fedcore.strategy import FedAvg


# ------------------------------------------------------------------ SelectionConfig
@pytest.mark.parametrize("settings", [
    {"count": -1, "fraction": 0.5},  # a negative count beside a valid fraction
    {"fraction": 1.000001},  # a fraction just above 1 alone
    {"fraction": 1.5},
    {"count": 2, "min_results": 0},
    {"count": 2, "min_available": 0},
    {"count": 2, "min_results": 3, "min_available": 2},
    {"count": 2, "over_selection": -0.01},
])
def test_a_selection_that_could_never_work_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SelectionConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("settings", [
    {"fraction": 1.0},
    {"fraction": 1e-9},
    {"count": 1},
    {"count": 2, "min_results": 2, "min_available": 2},
    {"count": 2, "min_results": 1, "min_available": 5},
    {"count": 2, "over_selection": 0.0},
])
def test_the_first_selections_that_work_are_taken(settings: dict[str, float]) -> None:
    config = SelectionConfig(**settings)  # type: ignore[arg-type]
    for name, value in settings.items():
        assert getattr(config, name) == value


def test_a_selection_needs_one_client_available_by_default() -> None:
    # docs/deployment.md: rounds.min_available defaults to 1 (a lone client starts a round)
    assert SelectionConfig(count=1).min_available == 1
    engine = RoundEngine(EngineConfig(num_rounds=1, train=SelectionConfig(count=1), evaluate=None),
                         FedAvg(), initial_params={"w": np.zeros(2)})
    engine.join("solo", now=5.0)
    engine.tick(5.0)
    assert engine.round_number == 1 and engine.open_clients() == ["solo"]


@pytest.mark.parametrize(("over", "available", "expected"), [
    (0.0, 10, 4), (0.5, 10, 6), (0.25, 10, 5), (1.0, 6, 6),
])
def test_over_selection_asks_that_fraction_more_capped_by_the_available(
        over: float, available: int, expected: int) -> None:
    selection = SelectionConfig(count=4, over_selection=over)
    assert selection.target(available) == 4
    assert selection.to_select(available) == expected


# ------------------------------------------------------------------ Limits
@pytest.mark.parametrize("name", ["max_properties", "max_metrics"])
def test_limits_of_zero_properties_or_metrics_are_allowed(name: str) -> None:
    assert getattr(Limits(**{name: 0}), name) == 0
    with pytest.raises(ValueError, match=name):
        Limits(**{name: -1})


def test_a_registry_that_takes_no_properties_still_takes_a_bare_join() -> None:
    registry = Registry(10.0, limits=Limits(max_properties=0))
    assert registry.join("a", now=0.0, properties={})
    with pytest.raises(EngineError) as err:
        registry.join("b", now=0.0, properties={"k": "v"})
    assert err.value.reason is Reason.INVALID and len(registry) == 1


def test_by_default_32_properties_are_taken_and_33_refused() -> None:
    # docs/reliability.md: limits.max_properties = 32
    registry = Registry(10.0)
    registry.join("a", now=0.0, properties={f"k{i}": "" for i in range(32)})
    with pytest.raises(EngineError) as err:
        registry.join("b", now=0.0, properties={f"k{i}": "" for i in range(33)})
    assert err.value.reason is Reason.INVALID and len(registry) == 1


def test_by_default_10000_clients_are_registered_and_the_next_new_one_refused() -> None:
    # docs/reliability.md: limits.max_clients = 10000 (RESOURCE_EXHAUSTED beyond)
    tokens = iter(range(1 << 30))
    registry = Registry(10.0, lambda n: next(tokens).to_bytes(n, "big"))
    for i in range(10_000):
        registry.join(f"c{i}", now=0.0, properties={})
    with pytest.raises(EngineError) as err:
        registry.join("one-more", now=0.0, properties={})
    assert err.value.reason is Reason.TOO_LARGE and len(registry) == 10_000


def test_the_upload_budget_defaults_to_one_gib() -> None:
    # docs/reliability.md: limits.upload_budget_mb = 1024.0, in MiB
    assert Limits().upload_budget_bytes == 1 << 30
    assert Limits(upload_budget_mb=0.5).upload_budget_bytes == 1 << 19
    assert Limits(upload_budget_mb=3.0).upload_budget_bytes == 3 << 20


# ------------------------------------------------------------------ EngineConfig
def _selected(config: EngineConfig) -> list[str]:
    engine = RoundEngine(config, FedAvg(), initial_params={"w": np.zeros(1)})
    for i in range(12):
        engine.join(f"c{i:02d}", now=0.0)
    engine.tick(0.0)
    return engine.open_clients()


def test_selection_is_seeded_with_0_by_default() -> None:
    # docs/deployment.md: rounds.seed = 0 seeds client selection
    train = SelectionConfig(count=3)
    default = _selected(EngineConfig(num_rounds=1, train=train, evaluate=None))
    assert default == _selected(EngineConfig(num_rounds=1, train=train, evaluate=None, seed=0))
    # the seed matters: another one picks others
    assert default != _selected(EngineConfig(num_rounds=1, train=train, evaluate=None, seed=1))


# ------------------------------------------------------------------ SecureAggregationConfig
@pytest.mark.parametrize("settings", [
    {"degree": -1},
    {"max_clients": 0},
    {"clip": 0.0},
    {"weight_cap": 0.0},
    {"phase_timeout_s": 0.0},
    {"weight_cap": -1.0},
    {"phase_timeout_s": math.nan},
])
def test_secure_settings_that_bound_nothing_are_refused_each_alone(
        settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SecureAggregationConfig(**settings)  # type: ignore[arg-type]


def test_the_smallest_secure_settings_are_taken() -> None:
    config = SecureAggregationConfig(degree=0, max_clients=1, clip=1e-3, weight_cap=1e-9,
                                     phase_timeout_s=1e-9)
    assert config.max_clients == 1 and config.for_round(1).threshold == 1


def test_secure_defaults_are_the_documented_ones() -> None:
    # docs/deployment.md: full mode, threshold 2/3 of the round, degree 0 (suggested)
    config = SecureAggregationConfig()
    assert config.mode is Mode.FULL and config.degree == 0
    assert [config.for_round(n).threshold for n in (3, 4, 9, 10)] == [2, 3, 6, 7]
    plus = SecureAggregationConfig(mode=Mode.SECAGG_PLUS)
    round_config = plus.for_round(64)
    assert round_config.degree == suggested_degree(64)
    assert round_config.threshold == math.ceil(2 / 3 * (round_config.even_degree + 1))


def test_a_full_round_uses_no_graph_whatever_the_degree() -> None:
    config = SecureAggregationConfig(mode=Mode.FULL, degree=6, max_clients=50).for_round(20)
    assert config.mode is Mode.FULL and config.degree == 0 and config.complete_for(20)
    assert config.threshold == math.ceil(2 / 3 * 20)


def test_a_sparse_round_of_few_clients_caps_the_degree_below_the_round() -> None:
    config = SecureAggregationConfig(mode=Mode.SECAGG_PLUS, max_clients=50)
    assert config.for_round(5).degree == 4  # suggested 6, capped at n - 1
    assert config.for_round(2).degree == 2  # never below 2
    assert config.for_round(5).complete_for(5)
    assert config.for_round(5).threshold == math.ceil(2 / 3 * 5)


def _roster(n: int) -> Roster:
    return Roster({f"c{i}": bytes([i + 1]) * 32 for i in range(n)})


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SECAGG_PLUS])
def test_a_signed_round_never_uses_a_threshold_below_the_signed_least(mode: Mode) -> None:
    unsigned = SecureAggregationConfig(mode=mode, threshold_fraction=0.1, max_clients=50)
    signed = SecureAggregationConfig(mode=mode, threshold_fraction=0.1, max_clients=50,
                                     roster=_roster(40))
    low, high = unsigned.for_round(40), signed.for_round(40)
    assert low.threshold < high.threshold
    assert high.threshold == least_signed_threshold(high, 40)
    if mode is Mode.SECAGG_PLUS:  # signed rounds take the larger suggested degree
        assert high.degree == min(suggested_signed_degree(40), 39)
        assert low.degree == suggested_degree(40)


def test_a_signed_round_keeps_a_higher_asked_threshold() -> None:
    signed = SecureAggregationConfig(threshold_fraction=1.0, max_clients=50, roster=_roster(9))
    assert signed.for_round(9).threshold == 9


def test_a_poll_reports_the_time_left_to_the_deadline_from_any_clock() -> None:
    engine = RoundEngine(EngineConfig(num_rounds=1, evaluate=None, round_timeout_s=10.0),
                         FedAvg(), initial_params={"w": np.zeros(1)})
    engine.join("a", now=1000.0)
    engine.tick(1000.0)
    task = engine.poll("a", now=1009.75)
    assert isinstance(task, Task) and task.time_left_s == pytest.approx(0.25)
    assert engine.poll("a", now=1000.0).time_left_s == pytest.approx(10.0)  # type: ignore[union-attr]


def test_distributed_dp_noise_that_fits_no_round_is_refused_when_loaded() -> None:
    # at 16 bits for 10 clients, z = 1.22 leaves too few levels even for the smallest round
    dp = DistributedDPConfig(noise_multiplier=1.22, clip_norm=1.0)
    with pytest.raises(ValueError, match="bit_width"):
        SecureAggregationConfig(bit_width=16, max_clients=10, distributed_dp=dp)
    fits = SecureAggregationConfig(bit_width=16, max_clients=10, distributed_dp=DistributedDPConfig(
        noise_multiplier=1.0, clip_norm=1.0))
    round_ = SecureRound(fits, selected=["a", "b", "c"], model_spec=spec_of({"w": np.zeros(1)}),
                         round_id=1, graph_seed=bytes(32), now=0.0)
    assert round_.noise() is not None and round_.spec.dim == 2
