"""The parameters a signed round needs, and the committed graph that nobody can choose."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg import keys
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.errors import ProtocolError, RoundAborted
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import (
    ConsistencySignature,
    EncryptedShares,
    GraphCommitment,
    GraphReveal,
    KeyList,
    MaskedInput,
    UnmaskShares,
)
from fedcore.secagg.safety import (
    UnsafeRound,
    holder_union,
    least_signed_threshold,
    tolerated_colluders,
)
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, expected_sum, make_inputs, signed_cohort, snapshot


def _config(n: int, mode: Mode, degree: int, threshold: int = 1) -> SecAggConfig:
    return SecAggConfig(threshold=threshold, max_clients=n, clip=1.0, mode=mode, degree=degree)


def _identities(n: int) -> tuple[dict[int, Ed25519PrivateKey], tuple[bytes, ...]]:
    private = {c: Ed25519PrivateKey.from_private_bytes(os.urandom(32)) for c in range(1, n + 1)}
    return private, tuple(private[c].public_key().public_bytes_raw() for c in range(1, n + 1))


# -- which thresholds a signed round needs ---------------------------------------------------


@pytest.mark.parametrize(("n", "mode", "degree", "threshold", "ok"), [
    (6, Mode.FULL, 0, 4, False),  # 4 = 2n/3 is not enough
    (6, Mode.FULL, 0, 5, True),
    (9, Mode.FULL, 0, 7, True),
    (9, Mode.SECAGG_PLUS, 4, 3, False),  # U = 7 needs 4
    (9, Mode.SECAGG_PLUS, 4, 4, True),
    (112, Mode.SECAGG_PLUS, 12, 9, False),  # the reviewed attack's k = 12, t = 9: U = 19
    (112, Mode.SECAGG_PLUS, 12, 10, True),
    (173, Mode.SECAGG_PLUS, 16, 12, False),  # and k = 16, t = 12: U = 25
    (173, Mode.SECAGG_PLUS, 16, 13, True),
])
def test_a_signed_client_refuses_a_threshold_too_low(n, mode, degree, threshold, ok) -> None:  # type: ignore[no-untyped-def]
    private, public = _identities(n)
    config = _config(n, mode, degree, threshold)
    spec = RoundSpec(config=config, round_id=1, num_clients=n, dim=4, identities=public)
    if ok:
        assert SecAggClient(spec, 1, identity_key=private[1]).phase.name == "ADVERTISE"
    else:
        with pytest.raises(UnsafeRound, match=f"needs t >= {threshold + 1}"):
            SecAggClient(spec, 1, identity_key=private[1])


@pytest.mark.parametrize("n", [3, 7, 20, 64, 200])
@pytest.mark.parametrize("degree", [2, 4, 6, 12, 16, 30])
def test_least_signed_threshold_is_the_least_meeting_the_condition(n, degree) -> None:  # type: ignore[no-untyped-def]
    config = _config(n, Mode.SECAGG_PLUS, degree)
    t, union = least_signed_threshold(config, n), holder_union(config, n)
    holders = n if config.complete_for(n) else config.even_degree + 1

    def meets(t: int) -> bool:
        if config.complete_for(n):
            return 3 * t > 2 * n
        return 2 * t > union and 3 * t > 2 * holders

    assert t <= holders
    assert meets(t) or t == holders
    assert not meets(t - 1)


def test_holder_union_is_the_largest_union_of_two_neighbourhoods_in_the_graph() -> None:
    for n, degree in [(30, 6), (40, 12), (13, 8), (9, 6)]:
        config = _config(n, Mode.SECAGG_PLUS, degree)
        graph = Graph(RoundSpec(config=config, round_id=1, num_clients=n, dim=1,
                                graph_seed=os.urandom(32)))
        largest = max(len(graph.holders(u) | graph.holders(w))
                      for u in range(1, n + 1) for w in graph.neighbours(u))
        assert holder_union(config, n) == largest


def test_tolerated_colluders_grows_with_the_threshold() -> None:
    least = least_signed_threshold(_config(200, Mode.SECAGG_PLUS, 16), 200)

    assert tolerated_colluders(_config(200, Mode.SECAGG_PLUS, 16, least), 200) == 0
    assert tolerated_colluders(_config(200, Mode.SECAGG_PLUS, 16, 17), 200) == 8


# -- the committed graph -----------------------------------------------------------------------

def _sparse(n: int = 12, threshold: int = 4, degree: int = 4) -> Cohort:
    return signed_cohort(n=n, threshold=threshold, mode=Mode.SECAGG_PLUS, degree=degree)


@pytest.mark.parametrize("drops", [
    {},
    {EncryptedShares: {2}},
    {MaskedInput: {3}},
    {ConsistencySignature: {5}},
    {UnmaskShares: {7}},
], ids=["none", "shares", "masked", "signature", "unmask"])
def test_signed_secagg_plus_round_is_exact_with_dropouts(drops) -> None:  # type: ignore[no-untyped-def]
    cohort = _sparse(threshold=4)
    inputs = make_inputs(cohort.spec)

    result = cohort.run(inputs, drops=drops)

    unmasked = {c for kind in (EncryptedShares, MaskedInput) for c in drops.get(kind, ())}
    assert set(result.survivors) == set(cohort.spec.clients) - unmasked
    assert np.array_equal(result.total.astype(object), expected_sum(cohort.spec, inputs,
                                                                    result.survivors))


def test_a_missing_reveal_aborts_the_round() -> None:
    cohort = _sparse()

    with pytest.raises(RoundAborted, match="did not reveal"):
        cohort.run(make_inputs(cohort.spec), drops={GraphReveal: {4}})


def test_the_graph_is_not_the_coordinators_seed_and_differs_between_runs() -> None:
    graphs = []
    for _ in range(2):
        cohort = _sparse()
        advance(cohort, ServerPhase.COLLECT_MASKED)
        client = cohort.clients[1]
        graphs.append({c: client._graph.neighbours(c) for c in cohort.spec.clients})
        assert client._graph_seed != cohort.spec.graph_seed
        assert client._graph_seed == cohort.server._graph_seed

    assert graphs[0] != graphs[1]


def _reveals(cohort: Cohort) -> list[object]:
    """Advertise, take the commitment lists; the clients' reveals."""
    lists = advance(cohort, ServerPhase.COLLECT_REVEALS)
    return [cohort.clients[m.recipient].handle(m)[0] for m in lists]


def test_a_coordinator_that_drops_a_reveal_to_reshape_the_graph_is_refused() -> None:
    cohort = _sparse()
    honest = [out for r in _reveals(cohort) for out in cohort.server.handle(r)]
    key_list = next(m for m in honest if isinstance(m, KeyList) and m.recipient == 1)
    client = cohort.clients[1]
    before = snapshot(client)

    for forged in (replace(key_list, reveals=key_list.reveals[1:]),
                   replace(key_list, reveals=(GraphReveal(sender=key_list.reveals[0].sender,
                                                          nonce=os.urandom(32)),
                                              *key_list.reveals[1:]))):
        with pytest.raises(ProtocolError, match="committed nonces|does not open"):
            client.handle(forged)
        assert snapshot(client) == before


def test_a_coordinator_cannot_leave_out_a_clients_own_commitment() -> None:
    cohort = _sparse()
    lists = {m.recipient: m for m in advance(cohort, ServerPhase.COLLECT_REVEALS)}
    own = lists[3]
    forged = replace(own, commitments=tuple(c for c in own.commitments if c.sender != 3))

    with pytest.raises(ProtocolError, match="own commitment"):
        cohort.clients[3].handle(forged)


def test_a_coordinator_cannot_grind_the_seed_with_commitments_of_its_own() -> None:
    """Whatever the coordinator (or colluders) commit to, an honest nonce decides the graph."""
    cohort = _sparse()
    lists = {m.recipient: m for m in advance(cohort, ServerPhase.COLLECT_REVEALS)}
    mine = lists[1]
    chosen = {c.sender: b"\x00" * 32 for c in mine.commitments if c.sender != 1}
    fake = tuple(
        GraphCommitment(sender=s, commitment=keys.graph_commitment(chosen[s], round_id=11, owner=s))
        if s != 1 else c
        for c in mine.commitments for s in [c.sender]
    )
    reveal = cohort.clients[1].handle(replace(mine, commitments=fake))[0]
    assert isinstance(reveal, GraphReveal)

    seeds = {keys.graph_seed(round_id=11, nonces=((1, nonce), *chosen.items()))
             for nonce in (reveal.nonce, os.urandom(32))}
    assert len(seeds) == 2  # the seed is fixed only once the honest nonce is out


def test_clients_shown_different_graphs_cannot_be_played_against_each_other() -> None:
    """Equivocating on the commitment list splits the round: shares do not cross views."""
    cohort = _sparse(threshold=8, degree=10)  # two random graphs share most of 1's neighbours
    lists = {m.recipient: m for m in advance(cohort, ServerPhase.COLLECT_REVEALS)}
    hidden = 12  # left out of every view but clients 1's and its own
    for c, shown in list(lists.items()):
        if c not in (1, hidden):
            lists[c] = replace(shown, commitments=tuple(
                x for x in shown.commitments if x.sender != hidden))
    reveals = {c: cohort.clients[c].handle(lists[c])[0] for c in lists}
    views = {
        "a": tuple(reveals[c] for c in sorted(reveals)),
        "b": tuple(reveals[c] for c in sorted(reveals) if c != hidden),
    }
    view_of = {c: "a" if c in (1, hidden) else "b" for c in lists}
    seeds = {v: keys.graph_seed(round_id=11, nonces=tuple((r.sender, r.nonce) for r in rs))
             for v, rs in views.items()}
    adverts = {m.sender: m for m in (cohort.clients[c]._advert for c in lists)}
    shares = {}
    for c, client in cohort.clients.items():
        graph, members = Graph(cohort.spec, seeds[view_of[c]]), views[view_of[c]]
        around = graph.holders(c) & {r.sender for r in members}
        key_list = KeyList(recipient=c, keys=tuple(adverts[p] for p in sorted(around)),
                           reveals=members)
        shares[c] = client.handle(key_list)[0]
    assert seeds["a"] != seeds["b"]
    ones = Graph(cohort.spec, seeds["a"]).neighbours(1)
    to_one = tuple(s for c, msg in shares.items() if view_of[c] == "b" and c in ones
                   for s in msg.shares if s.receiver == 1)
    assert to_one, "some client of the other view took client 1 as a neighbour"
    from fedcore.secagg.messages import ShareRelay

    with pytest.raises(ProtocolError, match="authentication"):
        cohort.clients[1].handle(ShareRelay(recipient=1, shares=to_one))
