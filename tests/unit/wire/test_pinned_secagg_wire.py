"""Every secure-aggregation message survives the wire: a signed SecAgg+ round (committed graph,
consistency check, a dropout to recover) in which each message in both directions is encoded to
protobuf bytes and decoded again sums to exactly what the same round sums in memory. Found
unexercised by coverage of the wire tests (key lists, consistency requests and signatures,
unmask shares, graph reveals, adverts); and a message that names nothing, or too many items,
is a WireError."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.proto.v1 import secagg_pb2 as spb
from fedcore.protocol.errors import WireError
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.messages import ClientMessage, MaskedInput, ServerMessage, wire_size
from fedcore.wire import secagg as wire


class WireCohort(Cohort):
    """A cohort whose messages all cross the wire as bytes."""

    def _to_server(self, messages: list[ClientMessage]) -> list[ServerMessage]:
        crossed = []
        for msg in messages:
            data = wire.client_message_to_proto(msg).SerializeToString()
            header = wire.client_message_from_proto(spb.SecAggClientMessage.FromString(data))
            joined = wire.with_payload(header, wire.client_payload(msg))
            if isinstance(joined, MaskedInput):  # read in place: a memoryview of the payload
                assert isinstance(joined.data, memoryview)
                assert bytes(joined.data) == bytes(msg.data)
                assert wire_size(joined) == wire_size(msg)  # sized as the bytes would be
            crossed.append(joined)
        return super()._to_server(crossed)

    def _to_clients(self, outbound, inputs):  # type: ignore[no-untyped-def, override]
        crossed = [wire.server_step_from_proto(spb.SecAggServerMessage.FromString(
            wire.server_step_to_proto(m).SerializeToString())) for m in outbound]
        return super()._to_clients(crossed, inputs)


def _spec_and_keys(n: int = 10) -> tuple[RoundSpec, dict[int, Ed25519PrivateKey]]:
    identity = {c: Ed25519PrivateKey.from_private_bytes(os.urandom(32)) for c in range(1, n + 1)}
    publics = tuple(identity[c].public_key().public_bytes_raw() for c in range(1, n + 1))
    config = SecAggConfig(threshold=6, max_clients=n, clip=1.0, bit_width=24,
                          mode=Mode.SECAGG_PLUS, degree=6)
    return RoundSpec(config=config, round_id=7, num_clients=n, dim=9, graph_seed=bytes(32),
                     identities=publics), identity


def test_a_signed_sparse_round_over_the_wire_sums_as_in_memory() -> None:
    spec, identity = _spec_and_keys()
    rng = np.random.default_rng(0)
    inputs = {c: rng.integers(0, spec.config.levels + 1, spec.dim) for c in spec.clients}
    drops = {MaskedInput: {3}}

    over_wire = WireCohort(spec, identity_keys=identity).run(inputs, drops=drops)
    in_memory = Cohort(spec, identity_keys=identity).run(inputs, drops=drops)

    assert 3 not in over_wire.survivors and over_wire.survivors == in_memory.survivors
    np.testing.assert_array_equal(over_wire.total, in_memory.total)
    expected = sum(inputs[c] for c in over_wire.survivors) % 2**spec.config.bit_width
    np.testing.assert_array_equal(over_wire.total.astype(np.int64), expected)


def test_empty_messages_are_wire_errors() -> None:
    with pytest.raises(WireError):
        wire.server_step_from_proto(spb.SecAggServerMessage())
    with pytest.raises(WireError):
        wire.client_message_from_proto(spb.SecAggClientMessage())


def test_a_repeated_field_of_100_000_items_is_accepted_and_one_more_refused() -> None:
    limit = 100_000  # docs/protocol.md: "A repeated field holds at most 100 000 items."
    ok = spb.SecAggServerMessage(consistency_request=spb.ConsistencyRequest(
        recipient=1, survivors=list(range(1, limit + 1))))
    assert len(wire.server_step_from_proto(ok).survivors) == limit  # type: ignore[union-attr]
    ok.consistency_request.survivors.append(limit + 1)
    with pytest.raises(WireError):
        wire.server_step_from_proto(ok)


def test_an_unknown_noise_kind_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        wire._dp_from_proto(spb.DistributedDP(noise_multiplier=1.0, clip_norm=1.0, kind=99))  # type: ignore[arg-type]


def test_a_server_step_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        wire.server_step_to_proto(MaskedInput(sender=1, data=b""))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["SKELLAM", "DISCRETE_GAUSSIAN"])
def test_a_setup_with_distributed_dp_crosses_the_wire_unchanged(kind: str) -> None:
    from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
    from fedcore.protocol.messages import SecAggSetup

    spec, _ = _spec_and_keys()
    dp = DistributedDPConfig(noise_multiplier=1.25, clip_norm=0.5, kind=IntegerNoise[kind],
                             delta=1e-6)
    setup = SecAggSetup(client=2, spec=spec, weight_cap=100.0, distributed_dp=dp,
                        participants=tuple(f"c{i}" for i in spec.clients))

    back = wire.server_step_from_proto(spb.SecAggServerMessage.FromString(
        wire.server_step_to_proto(setup).SerializeToString()))

    assert isinstance(back, SecAggSetup)
    assert back.distributed_dp == dp
    assert (back.client, back.weight_cap, back.participants) == (2, 100.0, setup.participants)
    assert back.spec.config == spec.config and back.spec.dim == spec.dim
