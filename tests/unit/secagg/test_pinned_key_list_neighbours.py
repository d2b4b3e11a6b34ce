"""A key list naming a client that is not this client's neighbour is refused on that ground
alone: the forged entry has keys of its own (distinct, 32 bytes), so no later check (repeated
keys, commitments) would refuse it, and the client is left as it was."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import KeyList
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_spec, snapshot


def _key_list(cohort: Cohort, recipient: int) -> KeyList:
    lists = advance(cohort, ServerPhase.COLLECT_SHARES)
    return next(m for m in lists if isinstance(m, KeyList) and m.recipient == recipient)


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SECAGG_PLUS])
def test_a_key_list_with_a_non_neighbour_is_refused_and_changes_nothing(mode: Mode) -> None:
    n = 8
    spec = make_spec(n=n, threshold=3, dim=4, mode=mode, degree=2 if mode is Mode.SECAGG_PLUS else 0)
    cohort = Cohort(spec)
    honest = _key_list(cohort, recipient=1)
    template = next(e for e in honest.keys if e.sender != 1)
    if mode is Mode.FULL:
        outsider = n + 1  # not a client of the round at all
    else:
        holders = Graph(spec).holders(1)
        outsider = next(c for c in spec.clients if c not in holders)
    forged = replace(honest, keys=(*honest.keys, replace(
        template, sender=outsider, cipher_pk=os.urandom(32), mask_pk=os.urandom(32))))
    client = cohort.clients[1]
    before = snapshot(client)
    with pytest.raises(ProtocolError):
        client.handle(forged)
    assert snapshot(client) == before
    assert client.handle(honest)


def test_a_key_list_naming_a_client_twice_with_other_keys_is_refused() -> None:
    # the second entry has keys of its own (distinct, 32 bytes): only the duplicate check
    # refuses it; without it the forged keys would replace the honest ones
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    honest = _key_list(cohort, recipient=1)
    other = next(e for e in honest.keys if e.sender != 1)
    forged = replace(honest, keys=(*honest.keys, replace(
        other, cipher_pk=os.urandom(32), mask_pk=os.urandom(32))))
    client = cohort.clients[1]
    before = snapshot(client)
    with pytest.raises(ProtocolError):
        client.handle(forged)
    assert snapshot(client) == before
    assert client.handle(honest)
