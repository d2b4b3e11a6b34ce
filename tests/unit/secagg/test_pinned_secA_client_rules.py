"""The rules an honest secure-aggregation client applies to what a coordinator sends, at their
edges: commitment lists of exactly t clients are taken and of t - 1 refused, as are repeated,
unknown or malformed entries; a key list must carry the client's own keys unchanged and each
committed nonce exactly once; survivor lists (for signing or unmasking) must name the client
itself and every id at most once. Each refusal is a ProtocolError that releases nothing and
leaves the client as it was, and its `reason` is the rule broken, not a nested refusal."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.messages import (
    ConsistencyRequest,
    GraphCommitment,
    GraphCommitments,
    GraphReveal,
    KeyList,
    ServerMessage,
    UnmaskRequest,
)
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_spec, signed_cohort, snapshot

N, T = 5, 3


def _refused_and_unchanged(client: SecAggClient, forged: ServerMessage) -> ProtocolError:
    before = snapshot(client)
    with pytest.raises(ProtocolError) as info:
        client.handle(forged)
    assert snapshot(client) == before
    return info.value


# -- the committed graph ------------------------------------------------------------------


def _committed() -> tuple[Cohort, GraphCommitments, list[ServerMessage]]:
    cohort = signed_cohort(n=8, threshold=T, mode=Mode.SECAGG_PLUS, degree=2)
    lists = advance(cohort, ServerPhase.COLLECT_REVEALS)
    honest = next(m for m in lists if isinstance(m, GraphCommitments) and m.recipient == 1)
    assert [c.sender for c in honest.commitments] == list(range(1, 9))
    return cohort, honest, lists


def test_a_commitment_list_of_exactly_t_clients_is_taken_and_of_t_minus_1_refused() -> None:
    cohort, honest, _ = _committed()
    client = cohort.clients[1]
    own, others = honest.commitments[0], honest.commitments[1:]

    _refused_and_unchanged(client, replace(honest, commitments=(own, *others[: T - 2])))
    [reveal] = client.handle(replace(honest, commitments=(own, *others[: T - 1])))

    assert isinstance(reveal, GraphReveal) and reveal.sender == 1
    assert client.phase is ClientPhase.AWAIT_KEYS


def _forged_commitment_lists(honest: GraphCommitments) -> dict[str, GraphCommitments]:
    own, second, third = honest.commitments[:3]
    return {
        # t entries by count, but only t - 1 clients
        "a client twice": replace(honest, commitments=(own, second, second)),
        "a client twice among all": replace(honest, commitments=(
            *honest.commitments[:4], honest.commitments[3], *honest.commitments[4:])),
        "unsorted": replace(honest, commitments=(own, third, second)),
        "a stranger": replace(honest, commitments=(
            *honest.commitments, GraphCommitment(sender=9, commitment=bytes(32)))),
        "a short commitment": replace(honest, commitments=(
            own, replace(second, commitment=second.commitment[:31]), third)),
        "a long commitment": replace(honest, commitments=(
            own, replace(second, commitment=second.commitment + b"\0"), third)),
    }


@pytest.mark.parametrize("case", ["a client twice", "a client twice among all", "unsorted",
                                  "a stranger", "a short commitment", "a long commitment"])
def test_a_malformed_commitment_list_is_refused_and_changes_nothing(case: str) -> None:
    cohort, honest, _ = _committed()
    client = cohort.clients[1]

    _refused_and_unchanged(client, _forged_commitment_lists(honest)[case])

    assert client.phase is ClientPhase.AWAIT_COMMITMENTS
    assert isinstance(client.handle(honest)[0], GraphReveal)


def test_a_key_list_revealing_a_nonce_twice_is_refused_and_changes_nothing() -> None:
    cohort, _, lists = _committed()
    reveals = [cohort.clients[m.recipient].handle(m)[0] for m in lists]
    out = [o for r in reveals for o in cohort.server.handle(r)]  # type: ignore[arg-type]
    honest = next(m for m in out if isinstance(m, KeyList) and m.recipient == 1)
    client = cohort.clients[1]

    for forged in (replace(honest, reveals=(*honest.reveals, honest.reveals[0])),
                   replace(honest, reveals=(honest.reveals[0], *honest.reveals))):
        _refused_and_unchanged(client, forged)

    assert client.handle(honest)


# -- key lists ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["cipher_pk", "mask_pk", "seed_commitment"])
def test_a_key_list_with_the_clients_own_keys_altered_is_refused(field: str) -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    lists = advance(cohort, ServerPhase.COLLECT_SHARES)
    honest = next(m for m in lists if isinstance(m, KeyList) and m.recipient == 1)
    forged = replace(honest, keys=tuple(
        replace(e, **{field: os.urandom(32)}) if e.sender == 1 else e for e in honest.keys))
    client = cohort.clients[1]

    err = _refused_and_unchanged(client, forged)

    assert err.got == "KeyList" and err.phase == ClientPhase.AWAIT_KEYS.name
    assert "refused in phase" not in err.reason  # the rule itself, not a wrapped refusal
    assert client.handle(honest)


# -- survivor lists -------------------------------------------------------------------------


def _unmask_request(recipient: int = 1) -> tuple[Cohort, UnmaskRequest]:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    honest = next(m for m in requests if isinstance(m, UnmaskRequest) and m.recipient == recipient)
    assert honest.survivors == tuple(range(1, N + 1)) and honest.dropped == ()
    return cohort, honest


@pytest.mark.parametrize("survivors", [(2, 3, 4, 5), (2, 3, 4), (1, 2, 2, 3, 4, 5),
                                       (1, 1, 2, 3, 4, 5), (1, 2, 3, 4, 5, 5)])
def test_an_unmask_request_not_naming_the_client_once_or_with_repeats_is_refused(
    survivors: tuple[int, ...],
) -> None:
    cohort, honest = _unmask_request()
    client = cohort.clients[1]

    err = _refused_and_unchanged(client, replace(honest, survivors=survivors))

    assert "refused in phase" not in err.reason
    assert client.phase is ClientPhase.AWAIT_UNMASK
    [answer] = client.handle(honest)
    assert [s.owner for s in answer.seed_shares] == list(range(1, N + 1))  # type: ignore[attr-defined]


def test_an_unmask_request_repeating_a_dropped_client_is_refused() -> None:
    cohort = Cohort(make_spec(n=6, threshold=T, dim=4))
    relays = advance(cohort, ServerPhase.COLLECT_MASKED)
    for relay in relays:
        cohort.clients[relay.recipient].handle(relay)
    for c in (1, 3, 4, 5, 6):  # client 2 never sends its masked input
        cohort.server.handle(cohort.clients[c].mask_input(np.zeros(4, np.int64)))
    requests = cohort.server.end_phase()
    honest = next(m for m in requests if isinstance(m, UnmaskRequest) and m.recipient == 1)
    assert honest.dropped == (2,)
    client = cohort.clients[1]

    _refused_and_unchanged(client, replace(honest, dropped=(2, 2)))

    [answer] = client.handle(honest)
    assert [s.owner for s in answer.key_shares] == [2]  # type: ignore[attr-defined]


@pytest.mark.parametrize("survivors", ["without the client", "a client twice"])
def test_a_consistency_request_not_naming_the_client_once_is_refused(survivors: str) -> None:
    cohort = signed_cohort(n=6, threshold=5, dim=4)
    requests = advance(cohort, ServerPhase.COLLECT_SIGNATURES)
    honest = next(m for m in requests if isinstance(m, ConsistencyRequest) and m.recipient == 1)
    assert honest.survivors == (1, 2, 3, 4, 5, 6)
    forged = replace(honest, survivors={"without the client": (2, 3, 4, 5, 6),
                                        "a client twice": (1, 2, 3, 3, 4, 5, 6)}[survivors])
    client = cohort.clients[1]

    _refused_and_unchanged(client, forged)

    assert client.phase is ClientPhase.AWAIT_CONSISTENCY
    assert client.handle(honest)
