"""A signed round's setup on the wire: participants travel, identity keys never do."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedcore.proto.v1 import secagg_pb2
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import SecAggSetup
from fedcore.secagg.config import RoundSpec, SecAggConfig
from fedcore.wire.secagg import server_step_from_proto, server_step_to_proto

SPEC = RoundSpec(config=SecAggConfig(threshold=3, max_clients=10, clip=1.0), round_id=3,
                 num_clients=3, dim=9, identities=(b"a" * 32, b"b" * 32, b"c" * 32))


def _through_the_wire(setup: SecAggSetup) -> SecAggSetup:
    raw = server_step_to_proto(setup).SerializeToString()
    step = server_step_from_proto(secagg_pb2.SecAggServerMessage.FromString(raw))
    assert isinstance(step, SecAggSetup)
    return step


def test_participants_travel_and_identity_keys_do_not() -> None:
    setup = SecAggSetup(client=2, spec=SPEC, weight_cap=10.0, participants=("x", "y", "z"))

    received = _through_the_wire(setup)

    assert received.participants == ("x", "y", "z")
    assert received.spec.identities is None  # clients take keys from their own roster
    assert received == replace(setup, spec=replace(SPEC, identities=None))
    assert b"a" * 32 not in server_step_to_proto(setup).SerializeToString()


def test_an_unsigned_setup_names_no_participants() -> None:
    setup = SecAggSetup(client=1, spec=replace(SPEC, identities=None), weight_cap=10.0)
    assert _through_the_wire(setup).participants == ()


def test_a_participant_list_of_the_wrong_length_is_refused() -> None:
    msg = server_step_to_proto(SecAggSetup(client=1, spec=SPEC, weight_cap=10.0,
                                           participants=("x", "y", "z")))
    msg.setup.participants.append("w")
    with pytest.raises(WireError, match="4 participants named for 3 clients"):
        server_step_from_proto(msg)
