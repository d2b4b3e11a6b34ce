"""A round's spec at its boundaries (found unpinned by benchmarks/mutation.py): a refusal is a
ValueError at construction, so no client or server machine is ever built from it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.errors import ProtocolError, SecAggError
from fedcore.secagg.keys import check_advertisement
from fedcore.secagg.messages import AdvertiseKeys, GraphCommitment, GraphCommitments

from .conftest import signed_cohort, snapshot

CONFIG = SecAggConfig(max_clients=4, threshold=3, clip=1.0)


@pytest.mark.parametrize("dim", [0, -1])
def test_a_round_of_no_coordinates_is_refused(dim: int) -> None:
    with pytest.raises(ValueError, match="dim must be >= 1"):
        RoundSpec(config=CONFIG, round_id=1, num_clients=4, dim=dim)


def test_the_smallest_round_is_accepted() -> None:
    spec = RoundSpec(config=CONFIG, round_id=0, num_clients=3, dim=1)

    assert (spec.dim, spec.num_clients, spec.signed) == (1, 3, False)


@pytest.mark.parametrize("clients", [0, 2, 5])
def test_a_round_outside_threshold_and_max_clients_is_refused(clients: int) -> None:
    with pytest.raises(ValueError, match="num_clients|threshold"):
        RoundSpec(config=CONFIG, round_id=1, num_clients=clients, dim=3)


def test_a_configuration_of_exactly_one_level_per_client_is_accepted() -> None:
    config = SecAggConfig(max_clients=3, threshold=2, clip=1.0, bit_width=2)  # (2**2 - 1) // 3

    assert config.levels == 1
    with pytest.raises(ValueError, match="no quantisation levels"):
        SecAggConfig(max_clients=4, threshold=2, clip=1.0, bit_width=2)


def test_an_unsigned_round_refuses_an_advertisement_with_a_signature() -> None:
    advert = AdvertiseKeys(sender=1, cipher_pk=bytes(32), mask_pk=bytes(32),
                           seed_commitment=bytes(32))
    check_advertisement(advert, round_id=1, identities=None)  # the plain one passes

    with pytest.raises(SecAggError, match="unsigned round carries a signature"):
        check_advertisement(replace(advert, signature=bytes(64)), round_id=1, identities=None)


def test_a_client_refuses_commitments_out_of_order_and_keeps_waiting_for_them() -> None:
    cohort = signed_cohort(n=8, threshold=5, mode=Mode.SECAGG_PLUS, degree=4)
    assert cohort.spec.committed_graph
    adverts = {c: m.advertise_keys() for c, m in sorted(cohort.clients.items())}
    commitments = [GraphCommitment(sender=c, commitment=a.graph_commitment)
                   for c, a in adverts.items()]
    client = cohort.clients[1]
    before = snapshot(client)

    with pytest.raises(ProtocolError, match="not sorted distinct ids"):
        client.handle(GraphCommitments(recipient=1, commitments=tuple(reversed(commitments))))

    assert snapshot(client) == before  # the refusal changed nothing
    client.handle(GraphCommitments(recipient=1, commitments=tuple(commitments)))  # in order: taken
