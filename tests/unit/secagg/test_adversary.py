"""What a curious or malicious server sees and can obtain."""

from dataclasses import replace

import numpy as np
import pytest

from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.errors import ProtocolError, Refusal, RoundAborted
from fedcore.secagg.messages import (
    AdvertiseKeys,
    EncryptedShares,
    KeyList,
    MaskedInput,
    OwnedShare,
    ShareRelay,
    UnmaskShares,
)
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_inputs, make_spec, signed_cohort, snapshot

CHI2_LIMIT_255 = 400.0  # chi-square, 255 degrees of freedom: P(X > 400) < 1e-8


def _chi_square(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def _masked_vectors(inputs_value: int, bit_width: int = 32):
    spec = make_spec(n=5, threshold=3, dim=20_000, bit_width=bit_width)
    cohort = Cohort(spec, record=True)
    inputs = {c: np.full(spec.dim, inputs_value) for c in spec.clients}
    cohort.run(inputs)
    return [m.data for m in cohort.server_view if isinstance(m, MaskedInput)]


@pytest.mark.parametrize("value", [0, 1000])
def test_masked_bytes_look_uniform_even_for_constant_inputs(value):
    for data in _masked_vectors(value):
        counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)

        assert _chi_square(counts) < CHI2_LIMIT_255


def test_masked_top_bits_look_uniform():
    for data in _masked_vectors(0):
        top = np.frombuffer(data, dtype="<u4") >> np.uint32(24)

        assert _chi_square(np.bincount(top, minlength=256)) < CHI2_LIMIT_255


def test_masked_vector_is_not_the_input():
    spec = make_spec(n=4, threshold=3, dim=1000)
    cohort = Cohort(spec, record=True)
    inputs = make_inputs(spec)
    cohort.run(inputs)

    for msg in cohort.server_view:
        if isinstance(msg, MaskedInput):
            sent = np.frombuffer(msg.data, dtype="<u4")
            assert np.count_nonzero(sent == inputs[msg.sender]) < 5


def _secrets_released(view):
    seeds, mask_keys = set(), set()
    for msg in view:
        if isinstance(msg, UnmaskShares):
            seeds |= {s.owner for s in msg.seed_shares}
            mask_keys |= {s.owner for s in msg.key_shares}
    return seeds, mask_keys


@pytest.mark.parametrize(
    "drops",
    [{}, {EncryptedShares: {2}}, {MaskedInput: {2, 3}}, {UnmaskShares: {4}}],
    ids=["none", "shares", "masked", "unmask"],
)
def test_server_never_receives_both_secrets_of_a_client(drops):
    spec = make_spec(n=8, threshold=4)
    cohort = Cohort(spec, record=True)
    result = cohort.run(make_inputs(spec), drops=drops)
    seeds, mask_keys = _secrets_released(cohort.server_view)

    assert not seeds & mask_keys
    assert not mask_keys & set(result.survivors)


def test_malicious_server_listing_a_client_as_survivor_and_dropped_gets_nothing():
    cohort = Cohort(make_spec(n=6, threshold=3), record=True)
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    victim = 2
    released = []

    for request in requests:
        forged = replace(
            request, dropped=tuple(sorted({*request.dropped, victim} - {request.recipient}))
        )
        if request.recipient == victim:
            forged = replace(request, dropped=(victim,))
        with pytest.raises(ProtocolError, match="survivor and as dropped"):
            released += cohort.clients[request.recipient].handle(forged)

    assert released == []
    assert all(c.phase is ClientPhase.AWAIT_UNMASK for c in cohort.clients.values())


def test_refused_request_leaves_client_able_to_answer_an_honest_one():
    cohort = Cohort(make_spec(n=6, threshold=3))
    request = advance(cohort, ServerPhase.COLLECT_UNMASK)[0]
    client = cohort.clients[request.recipient]

    with pytest.raises(ProtocolError):
        client.handle(replace(request, dropped=(request.survivors[-1],)))

    assert isinstance(client.handle(request)[0], UnmaskShares)


def test_client_refuses_too_few_survivors():
    cohort = Cohort(make_spec(n=6, threshold=4))
    request = advance(cohort, ServerPhase.COLLECT_UNMASK)[0]

    with pytest.raises(ProtocolError, match="survivors among its holders, t=4"):
        cohort.clients[request.recipient].handle(replace(request, survivors=(1, 2, 3)))


def test_client_refuses_survivor_it_never_heard_from():
    cohort = Cohort(make_spec(n=6, threshold=3))
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    # client 6 dropped before sending shares, as far as client 1 knows
    cohort.clients[1]._received.pop(6)

    with pytest.raises(ProtocolError, match="never received shares"):
        cohort.clients[1].handle(requests[0])


def test_signed_client_refuses_dropping_a_survivor_it_signed():
    cohort = signed_cohort(n=6, threshold=5)
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    request = requests[0]
    forged = replace(request, survivors=request.survivors[:-1], dropped=request.survivors[-1:])

    with pytest.raises(ProtocolError, match="signed"):
        cohort.clients[request.recipient].handle(forged)


def test_signed_client_refuses_too_few_valid_signatures():
    cohort = signed_cohort(n=6, threshold=5)
    request = advance(cohort, ServerPhase.COLLECT_UNMASK)[0]
    forged = replace(request, signatures=request.signatures[:4])

    with pytest.raises(ProtocolError, match="holders signed the survivor list, t=5"):
        cohort.clients[request.recipient].handle(forged)


def test_signed_client_refuses_substituted_keys():
    cohort = signed_cohort(n=4, threshold=3)
    key_list = advance(cohort, ServerPhase.COLLECT_SHARES)[0]
    swapped = replace(key_list.keys[1], mask_pk=key_list.keys[2].mask_pk[::-1])
    forged = KeyList(
        recipient=key_list.recipient, keys=(key_list.keys[0], swapped, *key_list.keys[2:])
    )

    with pytest.raises(ProtocolError, match="not signed"):
        cohort.clients[key_list.recipient].handle(forged)


def test_client_refuses_tampered_relay():
    cohort = Cohort(make_spec(n=4, threshold=3))
    relay = advance(cohort, ServerPhase.COLLECT_MASKED)[0]
    sealed = relay.shares[0]
    bad = replace(sealed, ciphertext=bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:])
    client = cohort.clients[relay.recipient]
    before = snapshot(client)

    with pytest.raises(ProtocolError, match="authentication"):
        client.handle(ShareRelay(recipient=relay.recipient, shares=(bad, *relay.shares[1:])))

    assert snapshot(client) == before


def _drop_client_2_before_masking(cohort: Cohort) -> list:
    relays = advance(cohort, ServerPhase.COLLECT_MASKED)
    inputs = make_inputs(cohort.spec)
    for relay in relays:
        cohort.clients[relay.recipient].handle(relay)
    for c in (1, 3, 4, 5, 6):
        cohort.server.handle(cohort.clients[c].mask_input(inputs[c]))
    return cohort.server.end_phase()  # the deadline passes without client 2


def test_reappearing_dropped_client_is_refused():
    cohort = Cohort(make_spec(n=6, threshold=3))
    _drop_client_2_before_masking(cohort)
    late = cohort.clients[2].mask_input(make_inputs(cohort.spec)[2])
    before = snapshot(cohort.server)

    with pytest.raises(ProtocolError, match="MaskedInput"):
        cohort.server.handle(late)

    assert snapshot(cohort.server) == before


def test_dropped_client_cannot_send_unmask_shares():
    cohort = Cohort(make_spec(n=6, threshold=3))
    _drop_client_2_before_masking(cohort)
    before = snapshot(cohort.server)

    with pytest.raises(ProtocolError, match="client 2 is not part") as refused:
        cohort.server.handle(UnmaskShares(sender=2, seed_shares=(), key_shares=()))

    assert refused.value.kind is Refusal.NOT_IN_PHASE  # typed: callers never match the text
    assert snapshot(cohort.server) == before


def test_dropped_client_is_reported_to_its_neighbours():
    cohort = Cohort(make_spec(n=6, threshold=3))
    requests = _drop_client_2_before_masking(cohort)

    assert all(r.dropped == (2,) and 2 not in r.survivors for r in requests)


def test_server_refuses_shares_it_did_not_ask_for():
    cohort = Cohort(make_spec(n=6, threshold=3))
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    request = requests[0]
    answer = cohort.clients[request.recipient].handle(request)[0]
    extra = OwnedShare(owner=request.survivors[-1], share=answer.seed_shares[-1].share)
    greedy = replace(answer, key_shares=(*answer.key_shares, extra))
    before = snapshot(cohort.server)

    with pytest.raises(ProtocolError, match="key shares must be exactly"):
        cohort.server.handle(greedy)

    assert snapshot(cohort.server) == before


def test_corrupted_share_is_detected_and_named():
    cohort = Cohort(make_spec(n=5, threshold=3))
    requests = advance(cohort, ServerPhase.COLLECT_UNMASK)
    answers = [cohort.clients[r.recipient].handle(r)[0] for r in requests]
    first = answers[0]
    share = bytearray(first.seed_shares[1].share)
    share[0] ^= 1
    corrupted = replace(first.seed_shares[1], share=bytes(share))
    answers[0] = replace(
        first, seed_shares=(first.seed_shares[0], corrupted, *first.seed_shares[2:])
    )
    for answer in answers:
        cohort.server.handle(answer)

    with pytest.raises(RoundAborted, match=f"client {corrupted.owner}"):
        cohort.server.result()


def test_client_refuses_key_list_without_its_own_keys():
    cohort = Cohort(make_spec(n=4, threshold=3))
    key_list = advance(cohort, ServerPhase.COLLECT_SHARES)[0]
    others = tuple(k for k in key_list.keys if k.sender != key_list.recipient)

    with pytest.raises(ProtocolError, match="own keys"):
        cohort.clients[key_list.recipient].handle(replace(key_list, keys=others))


def test_server_refuses_unsigned_keys_in_signed_round():
    cohort = signed_cohort(n=4, threshold=3)
    advert = cohort.clients[1].advertise_keys()

    with pytest.raises(ProtocolError, match="not signed"):
        cohort.server.handle(replace(advert, signature=bytes(64)))


def test_server_refuses_short_masked_vector():
    cohort = Cohort(make_spec(n=4, threshold=3, dim=10))
    advance(cohort, ServerPhase.COLLECT_MASKED)
    before = snapshot(cohort.server)

    with pytest.raises(ProtocolError, match="bytes"):
        cohort.server.handle(MaskedInput(sender=1, data=bytes(39)))

    assert snapshot(cohort.server) == before


def test_unknown_sender_is_refused():
    server = Cohort(make_spec(n=4, threshold=3)).server
    advert = AdvertiseKeys(
        sender=9, cipher_pk=bytes(32), mask_pk=bytes(32), seed_commitment=bytes(32)
    )

    with pytest.raises(ProtocolError, match="client 9"):
        server.handle(advert)


def test_signed_client_verifies_each_signer_once_however_many_copies_are_relayed(monkeypatch):
    cohort = signed_cohort(n=6, threshold=5)
    request = advance(cohort, ServerPhase.COLLECT_UNMASK)[0]
    flood = replace(request, signatures=tuple(
        replace(s, signature=bytes(64)) for s in request.signatures for _ in range(50)
    ) + request.signatures)
    calls = []
    from fedcore.secagg import keys as keys_mod

    real = keys_mod.verify
    monkeypatch.setattr(keys_mod, "verify", lambda *a: calls.append(a) or real(*a))

    with pytest.raises(ProtocolError, match="holders signed"):
        cohort.clients[request.recipient].handle(flood)
    assert len(calls) <= len(request.signatures)
