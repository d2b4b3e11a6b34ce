"""The neighbour graph."""

import pytest

from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.graph import Graph


def _spec(n: int, degree: int, seed: bytes = bytes(32), mode: Mode = Mode.SECAGG_PLUS):
    config = SecAggConfig(threshold=2, max_clients=n, clip=1.0, mode=mode, degree=degree)
    return RoundSpec(config=config, round_id=1, num_clients=n, dim=1, graph_seed=seed)


def test_full_mode_is_complete():
    graph = Graph(_spec(5, 2, mode=Mode.FULL))

    assert graph.neighbours(3) == {1, 2, 4, 5}


@pytest.mark.parametrize(("n", "degree"), [(10, 2), (50, 6), (51, 5), (100, 14)])
def test_secagg_plus_graph_is_regular_with_even_degree(n, degree):
    graph = Graph(_spec(n, degree))
    even = degree + degree % 2

    assert all(len(graph.neighbours(c)) == even for c in range(1, n + 1))


def test_graph_is_symmetric():
    graph = Graph(_spec(40, 6))

    assert all(c in graph.neighbours(p) for c in range(1, 41) for p in graph.neighbours(c))


def test_graph_is_irreflexive():
    graph = Graph(_spec(40, 6))

    assert all(c not in graph.neighbours(c) for c in range(1, 41))


def test_same_seed_same_graph():
    one, two = Graph(_spec(30, 4, b"s" * 32)), Graph(_spec(30, 4, b"s" * 32))

    assert all(one.neighbours(c) == two.neighbours(c) for c in range(1, 31))


def test_seed_changes_graph():
    one, two = Graph(_spec(30, 4, b"s" * 32)), Graph(_spec(30, 4, b"t" * 32))

    assert any(one.neighbours(c) != two.neighbours(c) for c in range(1, 31))


def test_degree_at_least_n_minus_one_is_complete():
    assert Graph(_spec(5, 4)).complete


def test_holders_include_the_client():
    assert 7 in Graph(_spec(30, 4)).holders(7)
