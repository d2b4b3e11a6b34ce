"""Secure-aggregation corners pinned against the definition: with t = 1 a lone survivor whose
every peer dropped still releases what the server needs and the sum is its input; a client of
a committed-graph round draws a fresh 32-byte nonce from its key source and reveals exactly
the nonce its advert committed to; and the in-memory cohort keeps the server's view only
when asked to."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg import keys
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.messages import GraphCommitments, GraphReveal, MaskedInput, UnmaskShares
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, expected_sum, make_inputs, make_spec, signed_cohort


def test_with_t_1_a_lone_survivor_whose_peers_all_dropped_is_summed_alone() -> None:
    spec = make_spec(n=3, threshold=1, dim=8)
    cohort = Cohort(spec, record=True)
    inputs = make_inputs(spec, seed=9)

    result = cohort.run(inputs, drops={MaskedInput: {2, 3}})

    assert result.survivors == (1,)
    assert cohort.refusals == {}
    assert np.array_equal(result.total.astype(object), expected_sum(spec, inputs, (1,)))
    [answer] = [m for m in cohort.server_view if isinstance(m, UnmaskShares)]
    assert [s.owner for s in answer.seed_shares] == [1]
    assert [s.owner for s in answer.key_shares] == [2, 3]


def test_a_committed_graph_client_reveals_the_32_byte_nonce_it_committed_to() -> None:
    cohort = signed_cohort(n=8, threshold=3, mode=Mode.SECAGG_PLUS, degree=2)
    lists = advance(cohort, ServerPhase.COLLECT_REVEALS)
    for msg in lists:
        assert isinstance(msg, GraphCommitments)
        client = cohort.clients[msg.recipient]
        [reveal] = client.handle(msg)
        assert isinstance(reveal, GraphReveal) and reveal.sender == msg.recipient
        assert len(reveal.nonce) == 32
        own = next(c.commitment for c in msg.commitments if c.sender == msg.recipient)
        assert keys.graph_commitment(reveal.nonce, round_id=cohort.spec.round_id,
                                     owner=msg.recipient) == own


def test_the_nonce_comes_from_the_clients_key_source() -> None:
    identity = {c: Ed25519PrivateKey.from_private_bytes(bytes([c]) * 32) for c in range(1, 9)}
    spec = make_spec(8, 3, mode=Mode.SECAGG_PLUS, degree=2, identities=tuple(
        identity[c].public_key().public_bytes_raw() for c in range(1, 9)))
    drawn: list[int] = []

    def source(n: int) -> bytes:
        drawn.append(n)
        return bytes([len(drawn)]) * n

    client = SecAggClient(spec, 1, identity_key=identity[1], random_bytes=source)

    assert drawn[-1] == 32  # the graph nonce, drawn last
    nonce = bytes([len(drawn)]) * 32
    assert client.advertise_keys().graph_commitment == keys.graph_commitment(
        nonce, round_id=spec.round_id, owner=1)


def test_the_cohort_keeps_the_server_view_only_when_asked() -> None:
    spec = make_spec(n=4, threshold=3, dim=4)
    quiet, recording = Cohort(spec), Cohort(spec, record=True)
    for cohort in (quiet, recording):
        cohort.run(make_inputs(spec))

    assert quiet.server_view == []
    assert len(recording.server_view) == 4 * 4  # four messages from each client, unsigned
