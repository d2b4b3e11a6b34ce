"""What the secure-aggregation server takes from clients and when it gives up, against the
definition: a graph nonce that does not open its sender's commitment and a consistency
signature that is not the sender's over the survivor list are refused, leaving the server as
it was; a committed-graph round with fewer than t advertisers aborts before any commitment is
relayed; an abort keeps no part of the masked sum; and a server whose CPU count is unknown still
unmasks through an executor in at least one piece."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import ProtocolError, RoundAborted
from fedcore.secagg.messages import (
    ConsistencyRequest,
    ConsistencySignature,
    GraphCommitments,
    GraphReveal,
    MaskedInput,
)
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, expected_sum, make_inputs, make_spec, signed_cohort, snapshot


def _sparse_signed() -> Cohort:
    return signed_cohort(n=8, threshold=3, dim=4, mode=Mode.SECAGG_PLUS, degree=2)


def test_a_nonce_that_does_not_open_the_senders_commitment_is_refused() -> None:
    cohort = _sparse_signed()
    lists = advance(cohort, ServerPhase.COLLECT_REVEALS)
    first = next(m for m in lists if isinstance(m, GraphCommitments) and m.recipient == 1)
    [reveal] = cohort.clients[1].handle(first)
    assert isinstance(reveal, GraphReveal)
    server = cohort.server
    before = snapshot(server)

    for forged in (replace(reveal, nonce=os.urandom(32)), replace(reveal, nonce=reveal.nonce[:31]),
                   replace(reveal, nonce=reveal.nonce + b"\0")):
        with pytest.raises(ProtocolError):
            server.handle(forged)
        assert snapshot(server) == before

    assert server.handle(reveal) == []
    assert 1 not in server.pending


def test_a_signature_that_is_not_the_senders_over_the_survivors_is_refused() -> None:
    cohort = signed_cohort(n=6, threshold=5, dim=4)
    requests = advance(cohort, ServerPhase.COLLECT_SIGNATURES)
    by_client = {m.recipient: m for m in requests if isinstance(m, ConsistencyRequest)}
    [own] = cohort.clients[1].handle(by_client[1])
    [other] = cohort.clients[2].handle(by_client[2])
    assert isinstance(own, ConsistencySignature) and isinstance(other, ConsistencySignature)
    server = cohort.server
    before = snapshot(server)

    for forged in (replace(own, signature=bytes(64)), replace(other, sender=1),
                   replace(own, signature=own.signature[:-1] + bytes([own.signature[-1] ^ 1]))):
        with pytest.raises(ProtocolError):
            server.handle(forged)
        assert snapshot(server) == before

    assert server.handle(own) == []
    assert 1 not in server.pending


def test_a_committed_round_with_t_minus_1_advertisers_aborts_before_relaying_commitments() -> None:
    cohort = _sparse_signed()
    server = cohort.server
    for c in (1, 2):
        assert server.handle(cohort.clients[c].advertise_keys()) == []

    assert server.end_phase() == []

    assert server.phase is ServerPhase.ABORTED
    with pytest.raises(RoundAborted):
        server.result()


def test_a_committed_round_with_t_advertisers_relays_their_commitments() -> None:
    cohort = _sparse_signed()
    server = cohort.server
    for c in (1, 2, 3):
        server.handle(cohort.clients[c].advertise_keys())

    out = server.end_phase()

    assert server.phase is ServerPhase.COLLECT_REVEALS
    assert sorted(m.recipient for m in out) == [1, 2, 3]
    assert all(isinstance(m, GraphCommitments) and [c.sender for c in m.commitments] == [1, 2, 3]
               for m in out)


def test_an_abort_after_masked_inputs_arrived_keeps_no_part_of_the_sum() -> None:
    spec = make_spec(n=5, threshold=3, dim=6)
    cohort = Cohort(spec)
    server = cohort.server
    relays = advance(cohort, ServerPhase.COLLECT_MASKED)
    inputs = make_inputs(spec)
    for relay in relays[:2]:
        cohort.clients[relay.recipient].handle(relay)
        server.handle(cohort.clients[relay.recipient].mask_input(inputs[relay.recipient]))
    assert server._acc.size == spec.dim  # the running sum of two masked inputs

    server.end_phase()

    assert server.phase is ServerPhase.ABORTED
    assert server._acc.size == 0  # nothing of the partial sum is kept
    with pytest.raises(RoundAborted):
        server.result()


def test_a_server_that_cannot_count_cpus_unmasks_through_an_executor_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    spec = make_spec(n=5, threshold=3, dim=16)
    inputs = make_inputs(spec, seed=4)
    with ThreadPoolExecutor(1) as executor:
        result = Cohort(spec, executor=executor).run(inputs, drops={MaskedInput: {2}})

    assert result.survivors == (1, 3, 4, 5)
    assert np.array_equal(result.total.astype(object), expected_sum(spec, inputs, result.survivors))
