"""A secure-aggregation client's setup against the definition: an id outside 1..n is a
ValueError in signed rounds too (never an index into the identity list), and in a
committed-graph round a coordinator that shows a client commitments of its own choosing for
the other clients (and reveals the nonces that open them) is refused once the neighbours'
signed adverts carry other commitments: the graph stays bound to what each client committed."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg import keys
from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import GraphCommitment, GraphCommitments, GraphReveal, KeyList
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_spec, signed_cohort, snapshot

N = 6


def _signed_keys() -> tuple[list[Ed25519PrivateKey], tuple[bytes, ...]]:
    private = [Ed25519PrivateKey.from_private_bytes(os.urandom(32)) for _ in range(N)]
    return private, tuple(k.public_key().public_bytes_raw() for k in private)


@pytest.mark.parametrize("client_id", [0, N + 1, N + 5])
def test_a_signed_client_with_an_id_outside_the_round_is_a_value_error(client_id: int) -> None:
    private, publics = _signed_keys()
    spec = make_spec(N, 5, identities=publics)
    for key in (private[0], private[-1]):  # 0 would index the last identity from the end
        with pytest.raises(ValueError, match=f"client id {client_id}"):
            SecAggClient(spec, client_id, identity_key=key)


@pytest.mark.parametrize("client_id", [0, N + 1])
def test_an_unsigned_client_with_an_id_outside_the_round_is_a_value_error(client_id: int) -> None:
    with pytest.raises(ValueError, match=f"client id {client_id}"):
        SecAggClient(make_spec(N, 4), client_id)


def test_the_ids_at_the_ends_of_the_round_are_accepted() -> None:
    private, publics = _signed_keys()
    spec = make_spec(N, 5, identities=publics)
    assert SecAggClient(spec, 1, identity_key=private[0]).client_id == 1
    assert SecAggClient(spec, N, identity_key=private[N - 1]).client_id == N


def test_substituted_commitments_with_their_own_nonces_are_refused_at_the_key_list() -> None:
    cohort = signed_cohort(n=8, threshold=3, mode=Mode.SECAGG_PLUS, degree=2)
    spec, round_id = cohort.spec, cohort.spec.round_id
    lists = {m.recipient: m for m in advance(cohort, ServerPhase.COLLECT_REVEALS)}
    assert all(isinstance(m, GraphCommitments) for m in lists.values())
    fake = {c: bytes([c]) * 32 for c in spec.clients if c != 1}
    shown = replace(lists[1], commitments=tuple(
        c if c.sender == 1 else GraphCommitment(
            sender=c.sender, commitment=keys.graph_commitment(fake[c.sender], round_id=round_id,
                                                              owner=c.sender))
        for c in lists[1].commitments))
    [reveal] = cohort.clients[1].handle(shown)
    assert isinstance(reveal, GraphReveal)
    reveals = (reveal, *(GraphReveal(sender=c, nonce=fake[c]) for c in sorted(fake)))
    seed = keys.graph_seed(round_id=round_id, nonces=tuple((r.sender, r.nonce) for r in reveals))
    around = Graph(spec, seed).holders(1)
    adverts = {c: cohort.clients[c]._advert for c in spec.clients}  # genuine, signed
    forged = KeyList(recipient=1, keys=tuple(adverts[c] for c in sorted(around)), reveals=reveals)
    client = cohort.clients[1]
    before = snapshot(client)

    with pytest.raises(ProtocolError, match="graph commitment"):
        client.handle(forged)

    assert snapshot(client) == before
    assert client.phase is ClientPhase.AWAIT_KEYS


def test_an_unsigned_key_list_entry_carrying_a_graph_commitment_is_refused() -> None:
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    lists = advance(cohort, ServerPhase.COLLECT_SHARES)
    honest = next(m for m in lists if isinstance(m, KeyList) and m.recipient == 1)
    forged = replace(honest, keys=tuple(
        e if e.sender == 1 else replace(e, graph_commitment=bytes(32)) for e in honest.keys))
    client = cohort.clients[1]
    before = snapshot(client)

    with pytest.raises(ProtocolError, match="graph commitment"):
        client.handle(forged)

    assert snapshot(client) == before
    assert client.handle(honest)
