"""Every (phase, message) pair outside the transition tables raises and changes nothing."""

import itertools

import numpy as np
import pytest

from fedcore.secagg import client as client_mod
from fedcore.secagg import server as server_mod
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import ProtocolError, Refusal, RoundAborted
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    GraphCommitments,
    GraphReveal,
    KeyList,
    MaskedInput,
    OwnedShare,
    ShareRelay,
    UnmaskRequest,
    UnmaskShares,
)

from .conftest import advance, make_inputs, make_spec, signed_cohort, snapshot

SERVER_SAMPLES = [
    GraphCommitments(recipient=1, commitments=()),
    KeyList(recipient=1, keys=()),
    ShareRelay(recipient=1, shares=()),
    ConsistencyRequest(recipient=1, survivors=(1, 2, 3)),
    UnmaskRequest(recipient=1, survivors=(1, 2, 3), dropped=()),
]
CLIENT_SAMPLES = [
    AdvertiseKeys(sender=1, cipher_pk=bytes(32), mask_pk=bytes(32), seed_commitment=bytes(32)),
    GraphReveal(sender=1, nonce=bytes(32)),
    EncryptedShares(sender=1, shares=()),
    MaskedInput(sender=1, data=b""),
    ConsistencySignature(sender=1, signature=bytes(64)),
    UnmaskShares(sender=1, seed_shares=(OwnedShare(owner=1, share=b""),), key_shares=()),
]


def _sparse_signed_cohort():
    """A signed round whose graph is sparse: it goes through every phase there is."""
    return signed_cohort(n=8, threshold=3, mode=Mode.SECAGG_PLUS, degree=2)


def _client_in_every_phase():
    """A signed SecAgg+ round's client 1, stopped in each phase in turn."""
    cohort = _sparse_signed_cohort()
    machines = {}
    server, clients = cohort.server, cohort.clients
    inputs = make_inputs(cohort.spec)
    outbound = []
    for c in clients.values():
        if c.client_id == 1:
            machines[c.phase] = _clone_state(c)
        outbound += server.handle(c.advertise_keys())
    while outbound:
        replies = []
        for msg in outbound:
            target = clients[msg.recipient]
            if msg.recipient == 1:
                machines[target.phase] = _clone_state(target)
            replies += target.handle(msg)
            if target.phase is client_mod.Phase.MASK:
                if msg.recipient == 1:
                    machines[target.phase] = _clone_state(target)
                replies.append(target.mask_input(inputs[msg.recipient]))
        outbound = [out for reply in replies for out in server.handle(reply)]
    machines[clients[1].phase] = clients[1]
    return machines


def _clone_state(machine):
    clone = object.__new__(type(machine))
    vars(clone).update(
        {k: (v.copy() if hasattr(v, "copy") else v) for k, v in vars(machine).items()}
    )
    return clone


CLIENT_MACHINES = _client_in_every_phase()


def test_every_client_phase_was_reached():
    assert set(CLIENT_MACHINES) == set(client_mod.Phase)


ILLEGAL_CLIENT = [
    (phase, msg)
    for phase, msg in itertools.product(client_mod.Phase, SERVER_SAMPLES)
    if type(msg) not in client_mod.TRANSITIONS[phase]
]


@pytest.mark.parametrize(
    ("phase", "msg"), ILLEGAL_CLIENT, ids=lambda x: getattr(x, "name", type(x).__name__)
)
def test_client_refuses_message_outside_table_and_changes_nothing(phase, msg):
    machine = CLIENT_MACHINES[phase]
    before = snapshot(machine)

    with pytest.raises(ProtocolError) as info:
        machine.handle(msg)

    assert (info.value.phase, info.value.got) == (phase.name, type(msg).__name__)
    assert snapshot(machine) == before


@pytest.mark.parametrize("phase", [p for p in client_mod.Phase if p is not client_mod.Phase.MASK])
def test_client_refuses_mask_input_outside_mask_phase(phase):
    machine = CLIENT_MACHINES[phase]
    before = snapshot(machine)

    with pytest.raises(ProtocolError):
        machine.mask_input(np.zeros(machine._spec.dim, dtype=np.uint32))

    assert snapshot(machine) == before


@pytest.mark.parametrize(
    "phase", [p for p in client_mod.Phase if p is not client_mod.Phase.ADVERTISE]
)
def test_client_refuses_advertise_after_the_start(phase):
    machine = CLIENT_MACHINES[phase]

    with pytest.raises(ProtocolError):
        machine.advertise_keys()


def _server_in_every_phase():
    """Servers of signed rounds stopped in each phase, and ones that finished or aborted."""
    machines = {}
    for phase in server_mod.Phase:
        cohort = _sparse_signed_cohort()
        if phase is server_mod.Phase.ABORTED:
            with pytest.raises(RoundAborted):
                cohort.run(make_inputs(cohort.spec), drops={AdvertiseKeys: {1, 2}})
        else:
            advance(cohort, phase)
        machines[phase] = cohort.server
    return machines


SERVER_MACHINES = _server_in_every_phase()
ILLEGAL_SERVER = [
    (phase, msg)
    for phase, msg in itertools.product(server_mod.Phase, CLIENT_SAMPLES)
    if type(msg) not in server_mod.TRANSITIONS[phase]
]


def test_every_server_phase_was_reached():
    assert {m.phase for m in SERVER_MACHINES.values()} == set(server_mod.Phase)


@pytest.mark.parametrize(
    ("phase", "msg"), ILLEGAL_SERVER, ids=lambda x: getattr(x, "name", type(x).__name__)
)
def test_server_refuses_message_outside_table_and_changes_nothing(phase, msg):
    machine = SERVER_MACHINES[phase]
    before = snapshot(machine)

    with pytest.raises(ProtocolError) as info:
        machine.handle(msg)

    assert (info.value.phase, info.value.got) == (phase.name, type(msg).__name__)
    assert snapshot(machine) == before
    # a message whose phase is over is a slow client's (late); one from a later phase is wrong
    order = list(server_mod.Phase)
    collected_in = next(p for p, kinds in server_mod.TRANSITIONS.items() if type(msg) in kinds)
    late = order.index(collected_in) < order.index(phase)
    assert info.value.kind is (Refusal.NOT_IN_PHASE if late else Refusal.INVALID)


@pytest.mark.parametrize("phase", [server_mod.Phase.DONE, server_mod.Phase.ABORTED])
def test_server_refuses_end_phase_after_the_round(phase):
    with pytest.raises(ProtocolError):
        SERVER_MACHINES[phase].end_phase()


def test_client_refuses_message_for_another_recipient():
    spec = make_spec()
    machine = SecAggClient(spec, 1)
    machine.advertise_keys()
    before = snapshot(machine)

    with pytest.raises(ProtocolError, match="addressed to client 2"):
        machine.handle(KeyList(recipient=2, keys=()))

    assert snapshot(machine) == before
