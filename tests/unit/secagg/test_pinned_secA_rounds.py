"""Whole secure-aggregation rounds at their edges, against the definition: exactly t clients in
any phase still give the exact sum; t - 1 answers abort the round when that phase closes (no
message goes out, no result exists); in sparse graphs the server prunes clients that could not
hide among t holders before any honest client would have to refuse, never asks a client that
would refuse, aborts when a survivor's neighbourhood did not sign, and aborts rather than sum
wrongly when a dropped client's mask key cannot be rebuilt; a corrupted mask-key share is found
and named. The in-memory cohort counts exactly the bytes each client sends and receives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from fedcore.secagg import recovery
from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import ProtocolError, RoundAborted
from fedcore.secagg.graph import Graph
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ClientMessage,
    ConsistencyRequest,
    EncryptedShares,
    MaskedInput,
    ServerMessage,
    UnmaskRequest,
    UnmaskShares,
    wire_size,
)
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, expected_sum, make_inputs, make_spec, signed_cohort, snapshot


def _exact(cohort: Cohort, result: object, inputs: dict[int, np.ndarray]) -> bool:
    total, survivors = result.total, result.survivors  # type: ignore[attr-defined]
    return bool(np.array_equal(total.astype(object), expected_sum(cohort.spec, inputs, survivors)))


@pytest.mark.parametrize("message", [AdvertiseKeys, EncryptedShares, MaskedInput, UnmaskShares])
def test_exactly_t_clients_in_a_phase_still_give_the_exact_sum(message: type) -> None:
    spec = make_spec(n=6, threshold=4, dim=8)
    cohort = Cohort(spec)
    inputs = make_inputs(spec, seed=3)

    result = cohort.run(inputs, drops={message: {2, 5}})

    summed = (1, 2, 3, 4, 5, 6) if message is UnmaskShares else (1, 3, 4, 6)
    assert result.survivors == summed
    assert _exact(cohort, result, inputs)
    assert cohort.refusals == {}


def _replies(cohort: Cohort, outbound: list[ServerMessage]) -> list[ClientMessage]:
    inputs = make_inputs(cohort.spec)
    replies: list[ClientMessage] = []
    for msg in outbound:
        client = cohort.clients[msg.recipient]
        replies += client.handle(msg)
        if client.phase is ClientPhase.MASK:
            replies.append(client.mask_input(inputs[msg.recipient]))
    return replies


@pytest.mark.parametrize("phase", [ServerPhase.COLLECT_SHARES, ServerPhase.COLLECT_MASKED,
                                   ServerPhase.COLLECT_UNMASK])
def test_t_minus_1_answers_abort_the_round_when_the_phase_closes(phase: ServerPhase) -> None:
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    server = cohort.server
    replies = sorted(_replies(cohort, advance(cohort, phase)), key=lambda m: m.sender)
    for reply in replies[:2]:
        assert server.handle(reply) == []

    assert server.end_phase() == []

    assert server.phase is ServerPhase.ABORTED
    with pytest.raises(RoundAborted):
        server.result()
    with pytest.raises(ProtocolError):
        server.handle(replies[2])


def test_t_answers_move_the_round_on_when_the_phase_closes() -> None:
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    server = cohort.server
    replies = sorted(_replies(cohort, advance(cohort, ServerPhase.COLLECT_SHARES)),
                     key=lambda m: m.sender)
    for reply in replies[:3]:
        server.handle(reply)

    relays = server.end_phase()

    assert server.phase is ServerPhase.COLLECT_MASKED
    assert sorted(m.recipient for m in relays) == [1, 2, 3]


# -- sparse graphs ------------------------------------------------------------------------


def test_the_server_prunes_a_client_left_with_fewer_than_t_holders_before_it_must_refuse() -> None:
    spec = make_spec(n=10, threshold=3, dim=8, mode=Mode.SECAGG_PLUS, degree=4)
    graph = Graph(spec)
    victim = 1
    gone = set(sorted(graph.neighbours(victim))[:3])  # leaves it 2 holders: itself and one
    cohort = Cohort(spec)
    inputs = make_inputs(spec, seed=5)

    result = cohort.run(inputs, drops={AdvertiseKeys: gone})

    assert cohort.refusals == {}  # no honest client was sent a key list it must refuse
    assert victim not in result.survivors and not gone & set(result.survivors)
    assert cohort.bytes_down[victim] == 0  # it was never sent anything
    alive = set(result.survivors)
    assert len(alive) >= 3 and all(len(graph.holders(c) & alive) >= 3 for c in alive)
    assert _exact(cohort, result, inputs)


def _isolated(graph: Graph, clients: range) -> set[int]:
    chosen: set[int] = set()
    for c in clients:
        if not graph.neighbours(c) & chosen:
            chosen.add(c)
    return chosen


def test_survivors_that_cannot_hide_among_t_are_not_asked_and_the_round_aborts_at_once() -> None:
    spec = make_spec(n=8, threshold=2, dim=4, mode=Mode.SECAGG_PLUS, degree=2)
    graph = Graph(spec)
    keep = _isolated(graph, spec.clients)
    assert len(keep) >= 2
    cohort = Cohort(spec)
    server = cohort.server
    outbound = advance(cohort, ServerPhase.COLLECT_MASKED)
    masked = [m for m in _replies(cohort, outbound) if m.sender in keep]
    for reply in masked:
        assert server.handle(reply) == []

    assert server.end_phase() == []  # no unmask request: each would be refused

    assert server.phase is ServerPhase.ABORTED
    with pytest.raises(RoundAborted):
        server.result()


def test_a_dropped_client_whose_mask_key_cannot_be_rebuilt_aborts_instead_of_a_wrong_sum() -> None:
    spec = make_spec(n=6, threshold=1, dim=8, mode=Mode.SECAGG_PLUS, degree=2)
    dropped = 3
    holders = Graph(spec).neighbours(dropped)  # survivors masked with it, and hold its key
    cohort = Cohort(spec)

    with pytest.raises(RoundAborted, match=f"client {dropped}"):
        cohort.run(make_inputs(spec), drops={MaskedInput: {dropped}, UnmaskShares: holders})


def test_a_survivor_whose_holders_did_not_all_sign_aborts_before_any_unmask_request() -> None:
    cohort = signed_cohort(n=8, threshold=3, dim=4, mode=Mode.SECAGG_PLUS, degree=2)
    server = cohort.server
    requests = advance(cohort, ServerPhase.COLLECT_SIGNATURES)
    assert all(isinstance(m, ConsistencyRequest) for m in requests)
    signatures = [s for m in requests if m.recipient != 1 for s in cohort.clients[m.recipient].handle(m)]
    for signature in signatures:  # 7 of 8 sign; client 1 and its neighbours lack a holder
        assert server.handle(signature) == []

    out = server.end_phase()

    assert out == [] and not any(isinstance(m, UnmaskRequest) for m in out)
    assert server.phase is ServerPhase.ABORTED
    assert "signed" in (server.abort_reason or "")


def test_holders_that_all_signed_are_enough_when_there_are_exactly_t() -> None:
    cohort = signed_cohort(n=8, threshold=3, dim=4, mode=Mode.SECAGG_PLUS, degree=2)
    server = cohort.server  # every client has 3 = t holders: itself and two neighbours
    requests = advance(cohort, ServerPhase.COLLECT_SIGNATURES)
    signatures = [s for m in requests for s in cohort.clients[m.recipient].handle(m)]
    out = [o for s in signatures for o in server.handle(s)]

    assert server.phase is ServerPhase.COLLECT_UNMASK
    assert sorted(m.recipient for m in out if isinstance(m, UnmaskRequest)) == list(range(1, 9))


def test_a_signed_round_with_t_minus_1_masked_inputs_aborts_without_asking_for_signatures() -> None:
    cohort = signed_cohort(n=6, threshold=5, dim=4)
    server = cohort.server
    replies = sorted(_replies(cohort, advance(cohort, ServerPhase.COLLECT_MASKED)),
                     key=lambda m: m.sender)
    for reply in replies[:4]:
        assert server.handle(reply) == []

    assert server.end_phase() == []  # no consistency request: each would be refused

    assert server.phase is ServerPhase.ABORTED


def test_a_corrupted_mask_key_share_is_detected_and_named() -> None:
    cohort = Cohort(make_spec(n=6, threshold=3, dim=4))
    server = cohort.server
    relays = advance(cohort, ServerPhase.COLLECT_MASKED)
    masked = [m for m in _replies(cohort, relays) if m.sender != 2]
    requests = [out for m in masked for out in server.handle(m)] or server.end_phase()
    answers = sorted((cohort.clients[r.recipient].handle(r)[0] for r in requests),
                     key=lambda m: m.sender)
    first = answers[0]
    assert isinstance(first, UnmaskShares) and [s.owner for s in first.key_shares] == [2]
    share = bytearray(first.key_shares[0].share)
    share[5] ^= 1  # limb 1: a change in limb 0's low bits may only touch bits X25519 clamps
    answers[0] = replace(first, key_shares=(replace(first.key_shares[0], share=bytes(share)),))
    for answer in answers:
        server.handle(answer)

    assert server.phase is ServerPhase.ABORTED
    with pytest.raises(RoundAborted, match="client 2"):
        server.result()


def test_an_unsigned_advert_carrying_a_graph_commitment_is_refused_and_changes_nothing() -> None:
    cohort = Cohort(make_spec(n=4, threshold=3, dim=4))
    advert = cohort.clients[1].advertise_keys()
    before = snapshot(cohort.server)

    with pytest.raises(ProtocolError):
        cohort.server.handle(replace(advert, graph_commitment=bytes(32)))

    assert snapshot(cohort.server) == before
    cohort.server.handle(advert)
    assert 1 not in cohort.server.pending


def test_strip_all_through_an_executor_defaults_to_one_piece() -> None:
    spec = make_spec(n=4, threshold=3, dim=33)
    work = recovery.MaskWork(round_id=spec.round_id, dim=33, dtype="<u4",
                             self_seeds=(b"\1" * 32, b"\2" * 32))
    inline = np.arange(33, dtype=np.uint32)
    recovery.strip_all(inline, work)
    pooled = np.arange(33, dtype=np.uint32)
    with ThreadPoolExecutor(1) as executor:
        recovery.strip_all(pooled, work, executor=executor)

    assert np.array_equal(pooled, inline)
    assert not np.array_equal(inline, np.arange(33, dtype=np.uint32))


# -- what the cohort counts -----------------------------------------------------------------


def test_the_cohort_counts_exactly_the_bytes_each_client_sends_and_receives() -> None:
    spec = make_spec(n=5, threshold=3, dim=6)
    cohort = Cohort(spec, record=True)
    received: dict[int, int] = dict.fromkeys(spec.clients, 0)
    for c, client in cohort.clients.items():
        def counting(msg: ServerMessage, c: int = c, real: object = client.handle) -> object:
            received[c] += wire_size(msg)
            return real(msg)  # type: ignore[operator]
        client.handle = counting  # type: ignore[method-assign]

    cohort.run(make_inputs(spec), drops={MaskedInput: {4}})

    assert cohort.bytes_down == received
    assert all(v > 0 for v in received.values())
    sent = dict.fromkeys(spec.clients, 0)
    for msg in cohort.server_view:
        sent[msg.sender] += wire_size(msg)
    assert cohort.bytes_up == sent
    assert not any(isinstance(m, MaskedInput) and m.sender == 4 for m in cohort.server_view)
