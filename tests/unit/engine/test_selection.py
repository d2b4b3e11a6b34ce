"""Seeded uniform selection, count vs fraction, over-selection and min_available gating."""

from __future__ import annotations

import collections
import random

import pytest

from fedcore.engine import Phase, SelectionConfig
from fedcore.engine.selection import round_rng, select_clients
from fedcore.protocol.messages import Wait

CLIENTS = [f"c{i}" for i in range(10)]


def selections(make_harness, *, seed: int, rounds: int, clients: int = 10, count: int = 3):
    h = make_harness(
        clients=clients,
        num_rounds=rounds,
        seed=seed,
        train=SelectionConfig(count=count, min_available=clients),
    )
    chosen = []
    for _ in range(rounds):
        tasks = h.play_round({f"c{i}": (0.0, 1) for i in range(clients)})
        chosen.append(frozenset(tasks))
    assert h.engine.phase is Phase.DONE
    return chosen


def test_same_seed_selects_the_same_clients(make_harness) -> None:
    assert selections(make_harness, seed=7, rounds=5) == selections(make_harness, seed=7, rounds=5)


def test_different_seeds_select_differently(make_harness) -> None:
    assert selections(make_harness, seed=1, rounds=5) != selections(make_harness, seed=2, rounds=5)


def test_selection_does_not_depend_on_join_order(make_harness) -> None:
    forward = make_harness(clients=0, seed=3, train=SelectionConfig(count=3, min_available=10))
    forward.join(*CLIENTS)
    backward = make_harness(clients=0, seed=3, train=SelectionConfig(count=3, min_available=10))
    backward.join(*reversed(CLIENTS))

    assert set(forward.tasks()) == set(backward.tasks())


def test_every_client_is_selected_about_equally_often(make_harness) -> None:
    counts = collections.Counter(
        cid
        for chosen in selections(make_harness, seed=0, rounds=60, clients=6, count=2)
        for cid in chosen
    )

    # 60 rounds x 2 of 6: 20 each on average, standard deviation about 3.7
    assert set(counts) == {f"c{i}" for i in range(6)}
    assert all(8 <= n <= 32 for n in counts.values()), counts


def test_select_clients_is_uniform_over_many_draws() -> None:
    counts = collections.Counter(
        cid for r in range(1000) for cid in select_clients(CLIENTS, 3, round_rng(0, r, "train"))
    )

    # 300 expected per client, binomial standard deviation about 14.5
    assert all(240 <= n <= 360 for n in counts.values()), counts


def test_select_clients_draws_without_replacement() -> None:
    chosen = select_clients(CLIENTS, 10, random.Random(0))

    assert sorted(chosen) == sorted(CLIENTS)


def test_select_clients_refuses_more_than_available() -> None:
    with pytest.raises(ValueError):
        select_clients(CLIENTS, 11, random.Random(0))


def test_count_selects_that_many(make_harness) -> None:
    h = make_harness(clients=8, train=SelectionConfig(count=3, min_available=8))

    assert len(h.tasks()) == 3


def test_fraction_selects_that_share_rounded_up(make_harness) -> None:
    h = make_harness(clients=8, train=SelectionConfig(fraction=0.3, min_available=8))

    assert len(h.tasks()) == 3  # ceil(0.3 * 8)


def test_count_is_capped_by_available_clients(make_harness) -> None:
    h = make_harness(clients=2, train=SelectionConfig(count=5, min_available=2))

    assert len(h.tasks()) == 2


def test_over_selection_asks_extra_clients(make_harness) -> None:
    h = make_harness(clients=8, train=SelectionConfig(count=4, over_selection=0.5, min_available=8))

    assert len(h.tasks()) == 6


@pytest.mark.parametrize(
    ("config", "available", "target", "to_select"),
    [
        (SelectionConfig(count=3), 10, 3, 3),
        (SelectionConfig(fraction=0.25), 10, 3, 3),
        (SelectionConfig(fraction=1.0), 7, 7, 7),
        (SelectionConfig(count=3, over_selection=0.5), 10, 3, 5),
        (SelectionConfig(count=3, over_selection=1.0), 4, 3, 4),
        (SelectionConfig(fraction=0.1, min_results=2, min_available=2), 10, 2, 2),
    ],
)
def test_selection_config_target_and_to_select(
    config: SelectionConfig, available: int, target: int, to_select: int
) -> None:
    assert (config.target(available), config.to_select(available)) == (target, to_select)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"count": 2, "fraction": 0.5},
        {"fraction": 1.5},
        {"count": 2, "over_selection": -0.1},
        {"count": 2, "min_results": 0},
        {"count": 2, "min_results": 3, "min_available": 2},
    ],
)
def test_selection_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SelectionConfig(**kwargs)


def test_no_round_starts_below_min_available(make_harness) -> None:
    h = make_harness(clients=2, train=SelectionConfig(count=2, min_available=3))

    assert all(isinstance(h.poll(cid), Wait) for cid in h.sessions)
    assert (h.engine.phase, h.engine.round_number) == (Phase.WAITING, 0)


def test_round_starts_when_min_available_is_reached(make_harness) -> None:
    h = make_harness(clients=2, train=SelectionConfig(count=2, min_available=3))

    h.join("c2")

    assert (h.engine.phase, h.engine.round_number) == (Phase.TRAINING, 1)
    assert len(h.tasks()) == 2


def test_silent_clients_stop_counting_as_available(make_harness) -> None:
    h = make_harness(
        clients=0, client_timeout_s=10.0, train=SelectionConfig(count=2, min_available=2)
    )
    h.join("c0")
    h.now += 11.0

    h.join("c1")

    assert h.engine.phase is Phase.WAITING
