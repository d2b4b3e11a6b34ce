"""A secure-aggregation client answers each step once: a second unmasking request (one that
moves a survivor it already answered for to the dropped list, which would hand the server both
secrets of that client), a second survivor list to sign, a replayed key list (which would share
its secrets again with fresh polynomials) and a replayed share relay are each refused with a
ProtocolError that releases nothing and leaves the client exactly as it was."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.messages import (
    ConsistencyRequest,
    KeyList,
    ServerMessage,
    ShareRelay,
    UnmaskRequest,
    UnmaskShares,
)
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_spec, signed_cohort, snapshot


def _refused_and_unchanged(client: SecAggClient, msg: ServerMessage) -> None:
    before = snapshot(client)
    with pytest.raises(ProtocolError):
        client.handle(msg)
    assert snapshot(client) == before


def test_a_second_unmask_request_cannot_get_both_secrets_of_a_client() -> None:
    cohort = Cohort(make_spec(n=6, threshold=3, dim=4))
    relays = advance(cohort, ServerPhase.COLLECT_MASKED)
    for relay in relays:
        cohort.clients[relay.recipient].handle(relay)
    for c in (1, 3, 4, 5, 6):  # client 2 drops before masking
        cohort.server.handle(cohort.clients[c].mask_input(np.zeros(4, np.int64)))
    requests = cohort.server.end_phase()
    first = next(m for m in requests if isinstance(m, UnmaskRequest) and m.recipient == 1)
    assert first.survivors == (1, 3, 4, 5, 6) and first.dropped == (2,)
    client = cohort.clients[1]
    [answer] = client.handle(first)
    assert isinstance(answer, UnmaskShares)
    assert 3 in {s.owner for s in answer.seed_shares}
    assert client.phase is ClientPhase.DONE

    second = replace(first, survivors=(1, 4, 5, 6), dropped=(2, 3))
    for replay in (second, first):
        _refused_and_unchanged(client, replay)


def test_a_client_signs_one_survivor_list_only() -> None:
    cohort = signed_cohort(n=7, threshold=5, dim=4)
    requests = advance(cohort, ServerPhase.COLLECT_SIGNATURES)
    first = next(m for m in requests if isinstance(m, ConsistencyRequest) and m.recipient == 1)
    client = cohort.clients[1]
    assert client.handle(first)
    assert client.phase is ClientPhase.AWAIT_UNMASK

    for replay in (replace(first, survivors=first.survivors[:-1]), first):
        _refused_and_unchanged(client, replay)


def test_a_replayed_key_list_does_not_share_the_secrets_again() -> None:
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    lists = advance(cohort, ServerPhase.COLLECT_SHARES)
    key_list = next(m for m in lists if isinstance(m, KeyList) and m.recipient == 1)
    client = cohort.clients[1]
    assert client.handle(key_list)
    assert client.phase is ClientPhase.AWAIT_SHARES

    _refused_and_unchanged(client, key_list)


def test_a_replayed_share_relay_is_refused_after_masking() -> None:
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    relays = advance(cohort, ServerPhase.COLLECT_MASKED)
    relay = next(m for m in relays if isinstance(m, ShareRelay) and m.recipient == 1)
    client = cohort.clients[1]
    client.handle(relay)
    _refused_and_unchanged(client, relay)  # in MASK: the input is due, not another relay
    client.mask_input(np.zeros(4, np.int64))

    _refused_and_unchanged(client, relay)
