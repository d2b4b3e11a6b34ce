"""Secure-aggregation behaviours a fresh mutation sample found unpinned (benchmarks/mutation.py):
the round id's range at both ends, a result asked for before the round ends, and the quantiser
at a clip range other than 1 (where c * 2 and 2 / c differ)."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.secagg.config import RoundSpec, SecAggConfig
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.quantize import Quantizer
from fedcore.secagg.server import Phase, SecAggServer

from .conftest import make_spec

CONFIG = SecAggConfig(max_clients=4, threshold=3, clip=1.0)


@pytest.mark.parametrize("round_id", [-1, 2**63, 2**64])
def test_a_round_id_outside_0_to_2_63_is_refused(round_id: int) -> None:
    with pytest.raises(ValueError):
        RoundSpec(config=CONFIG, round_id=round_id, num_clients=4, dim=3)


@pytest.mark.parametrize("round_id", [0, 2**63 - 1])
def test_the_round_ids_at_the_ends_of_the_range_are_accepted(round_id: int) -> None:
    assert RoundSpec(config=CONFIG, round_id=round_id, num_clients=4, dim=3).round_id == round_id


def test_the_result_of_a_round_still_collecting_keys_is_refused_and_changes_nothing() -> None:
    server = SecAggServer(make_spec())

    with pytest.raises(ProtocolError):
        server.result()
    assert server.phase is Phase.COLLECT_KEYS
    assert server.pending == frozenset(make_spec().clients)


@pytest.mark.parametrize("clip", [0.25, 4.0])
def test_quantising_then_decoding_one_client_is_within_a_step_at_any_clip(clip: float) -> None:
    q = Quantizer.from_config(SecAggConfig(max_clients=10, threshold=5, clip=clip, bit_width=16))
    values = np.linspace(-clip, clip, 41)

    words = q.quantize(values, np.random.default_rng(3))
    decoded = q.dequantize_sum(words, 1)

    step = 2 * clip / q.levels
    assert int(words.max()) <= q.levels
    assert float(np.abs(decoded - values).max()) <= step
    # the ends of the range map to the ends of [0, levels]
    assert (int(words[0]), int(words[-1])) == (0, q.levels)


def test_choose_bit_width_adds_the_bits_of_the_client_count_up_to_64() -> None:
    from fedcore.secagg.config import choose_bit_width

    assert [choose_bit_width(n, 8) for n in (1, 2, 4, 5)] == [8, 9, 10, 11]
    assert choose_bit_width(1, 64) == 64
    for clients, bits in ((2, 64), (0, 8), (4, 0)):
        with pytest.raises(ValueError):
            choose_bit_width(clients, bits)


def test_secagg_plus_needs_a_degree_of_at_least_two() -> None:
    from fedcore.secagg.config import Mode

    assert SecAggConfig(max_clients=4, threshold=3, clip=1.0, mode=Mode.SECAGG_PLUS,
                        degree=2).even_degree == 2
    with pytest.raises(ValueError):
        SecAggConfig(max_clients=4, threshold=2, clip=1.0, mode=Mode.SECAGG_PLUS, degree=1)


@pytest.mark.parametrize("fields", [{"graph_seed": bytes(31)}, {"graph_seed": bytes(33)},
                                    {"identities": (bytes(32),) * 3},
                                    {"identities": (bytes(32),) * 3 + (bytes(31),)}])
def test_a_bad_graph_seed_or_identity_list_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RoundSpec(config=CONFIG, round_id=1, num_clients=4, dim=3, **fields)  # type: ignore[arg-type]


def test_append_weight_takes_weights_in_0_to_1_and_split_weight_undoes_it() -> None:
    from fedcore.secagg.quantize import append_weight, split_weight

    for weight in (0.0, 1.0):
        vector = append_weight(np.array([0.5, -0.25]) * weight, weight, clip=2.0)
        assert split_weight(vector, clip=2.0)[1] == weight
    np.testing.assert_array_equal(append_weight([0.5, -0.25], 0.5, clip=2.0), [0.5, -0.25, 1.0])
    for weight in (-1e-9, 1.0 + 1e-9):
        with pytest.raises(ValueError):
            append_weight([0.5], weight, clip=2.0)


def test_a_signed_round_needs_the_clients_own_identity_key() -> None:
    import os

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fedcore.secagg.client import SecAggClient

    keys = [Ed25519PrivateKey.from_private_bytes(os.urandom(32)) for _ in range(6)]
    spec = make_spec(6, 5, identities=tuple(k.public_key().public_bytes_raw() for k in keys))

    assert SecAggClient(spec, 2, identity_key=keys[1]).client_id == 2
    for key in (None, keys[2]):  # none, or another client's
        with pytest.raises(ValueError):
            SecAggClient(spec, 2, identity_key=key)


def test_the_signed_degree_is_twice_the_plain_one() -> None:
    from fedcore.secagg.config import suggested_degree, suggested_signed_degree

    assert (suggested_degree(100), suggested_signed_degree(100)) == (14, 28)  # k = 28: docstring
    assert (suggested_degree(2), suggested_signed_degree(2)) == (2, 4)


def test_a_graph_commitment_is_empty_or_32_bytes() -> None:
    from fedcore.secagg.errors import SecAggError
    from fedcore.secagg.keys import check_advertisement
    from fedcore.secagg.messages import AdvertiseKeys

    def advert(commitment: bytes) -> AdvertiseKeys:
        return AdvertiseKeys(sender=1, cipher_pk=bytes(32), mask_pk=bytes(32),
                             seed_commitment=bytes(32), graph_commitment=commitment)

    for ok in (b"", bytes(32)):
        check_advertisement(advert(ok), round_id=1, identities=None)
    for bad in (bytes(31), bytes(33)):
        with pytest.raises(SecAggError):
            check_advertisement(advert(bad), round_id=1, identities=None)


def test_a_server_with_one_unmasking_job_is_accepted_and_zero_refused() -> None:
    assert SecAggServer(make_spec(), jobs=1).phase is Phase.COLLECT_KEYS
    with pytest.raises(ValueError):
        SecAggServer(make_spec(), jobs=0)
