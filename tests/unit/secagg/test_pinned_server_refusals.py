"""What the secure-aggregation server refuses from a client, each by a ProtocolError that leaves
the server exactly as it was (the honest message is then still taken): a second answer, shares
sent to other clients than the sender's key list, a malformed sealed share, and unmasking shares
of other clients than those requested."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedcore.secagg.cohort import Cohort
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.messages import EncryptedShares, KeyList, UnmaskRequest, UnmaskShares
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_spec, snapshot

N, T = 5, 3


def _shares_of_client_1(cohort: Cohort) -> EncryptedShares:
    lists = advance(cohort, ServerPhase.COLLECT_SHARES)
    key_list = next(m for m in lists if isinstance(m, KeyList) and m.recipient == 1)
    [shares] = cohort.clients[1].handle(key_list)
    assert isinstance(shares, EncryptedShares)
    return shares


def _forged_shares(honest: EncryptedShares) -> dict[str, EncryptedShares]:
    first = honest.shares[0]
    return {
        "one receiver missing": replace(honest, shares=honest.shares[1:]),
        "a share to itself": replace(honest, shares=(*honest.shares[1:],
                                                     replace(first, receiver=1))),
        "a receiver twice": replace(honest, shares=(*honest.shares[1:], honest.shares[1])),
        "a short ciphertext": replace(honest, shares=(
            replace(first, ciphertext=first.ciphertext[:-1]), *honest.shares[1:])),
        "a long ciphertext": replace(honest, shares=(
            replace(first, ciphertext=first.ciphertext + b"\0"), *honest.shares[1:])),
        "another sender inside": replace(honest, shares=(replace(first, sender=2),
                                                         *honest.shares[1:])),
    }


@pytest.mark.parametrize("case", ["one receiver missing", "a share to itself",
                                  "a receiver twice", "a short ciphertext", "a long ciphertext",
                                  "another sender inside"])
def test_forged_encrypted_shares_are_refused_and_change_nothing(case: str) -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    honest = _shares_of_client_1(cohort)
    before = snapshot(cohort.server)
    with pytest.raises(ProtocolError):
        cohort.server.handle(_forged_shares(honest)[case])
    assert snapshot(cohort.server) == before
    cohort.server.handle(honest)
    assert 1 not in cohort.server.pending


def test_a_second_answer_is_refused_and_changes_nothing() -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    honest = _shares_of_client_1(cohort)
    cohort.server.handle(honest)
    before = snapshot(cohort.server)
    with pytest.raises(ProtocolError):
        cohort.server.handle(honest)
    assert snapshot(cohort.server) == before


def _unmask_of_client_1(cohort: Cohort) -> UnmaskShares:
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    request = next(m for m in requests if isinstance(m, UnmaskRequest) and m.recipient == 1)
    [shares] = cohort.clients[1].handle(request)
    assert isinstance(shares, UnmaskShares)
    return shares


def test_unmasking_shares_of_other_clients_than_requested_are_refused() -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    honest = _unmask_of_client_1(cohort)
    assert len(honest.seed_shares) >= 2 and honest.key_shares == ()
    first = honest.seed_shares[0]
    forged = [
        replace(honest, seed_shares=honest.seed_shares[1:]),
        replace(honest, seed_shares=tuple(reversed(honest.seed_shares))),
        replace(honest, key_shares=(first,)),  # a key share of a client that did not drop
    ]
    before = snapshot(cohort.server)
    for bad in forged:
        with pytest.raises(ProtocolError):
            cohort.server.handle(bad)
        assert snapshot(cohort.server) == before
    cohort.server.handle(honest)
    assert 1 not in cohort.server.pending


def test_a_graph_commitment_in_a_round_without_a_committed_graph_is_refused() -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    honest = cohort.clients[1].advertise_keys()
    assert honest.graph_commitment == b""
    before = snapshot(cohort.server)
    with pytest.raises(ProtocolError):
        cohort.server.handle(replace(honest, graph_commitment=bytes(32)))
    assert snapshot(cohort.server) == before
    cohort.server.handle(honest)
    assert 1 not in cohort.server.pending
