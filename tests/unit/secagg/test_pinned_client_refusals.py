"""What an honest secure-aggregation client refuses from a lying coordinator, found unexercised
by coverage of the secagg tests: each forged key list or share relay is refused with a
ProtocolError and leaves the client exactly as it was (so the honest message still works);
a bad input vector is a ValueError before anything is masked."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.messages import GraphReveal, KeyList, ShareRelay
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import advance, make_spec, snapshot

N, T = 5, 3


def _key_list(cohort: Cohort, recipient: int = 1) -> KeyList:
    lists = advance(cohort, ServerPhase.COLLECT_SHARES)
    return next(m for m in lists if isinstance(m, KeyList) and m.recipient == recipient)


def _forged_key_lists(honest: KeyList) -> dict[str, KeyList]:
    own = next(e for e in honest.keys if e.sender == honest.recipient)
    others = [e for e in honest.keys if e.sender != honest.recipient]
    return {
        "reveals without a committed graph": replace(
            honest, reveals=(GraphReveal(sender=2, nonce=bytes(32)),)),
        "a client twice": replace(honest, keys=(*honest.keys, others[0])),
        "a stranger": replace(honest, keys=(*honest.keys, replace(others[0], sender=N + 1))),
        "fewer than t": replace(honest, keys=(own, *others[: T - 2])),
        "a repeated public key": replace(
            honest, keys=(own, replace(others[0], mask_pk=others[1].mask_pk), *others[1:])),
    }


@pytest.mark.parametrize("case", ["reveals without a committed graph", "a client twice",
                                  "a stranger", "fewer than t", "a repeated public key"])
def test_a_forged_key_list_is_refused_and_changes_nothing(case: str) -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    honest = _key_list(cohort)
    client = cohort.clients[1]
    before = snapshot(client)

    with pytest.raises(ProtocolError):
        client.handle(_forged_key_lists(honest)[case])

    assert snapshot(client) == before
    assert client.handle(honest)  # the honest list is still answered


def _relay(cohort: Cohort, recipient: int = 1) -> ShareRelay:
    relays = advance(cohort, ServerPhase.COLLECT_MASKED)
    return next(m for m in relays if isinstance(m, ShareRelay) and m.recipient == recipient)


@pytest.mark.parametrize("case", ["a sender twice", "a stranger's share",
                                  "a share for another client", "fewer than t holders"])
def test_a_forged_share_relay_is_refused_and_changes_nothing(case: str) -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    honest = _relay(cohort)
    first = honest.shares[0]
    forged = {
        "a sender twice": replace(honest, shares=(*honest.shares, first)),
        "a stranger's share": replace(honest, shares=(*honest.shares[1:],
                                                      replace(first, sender=N + 1))),
        "a share for another client": replace(honest, shares=(*honest.shares[1:],
                                                              replace(first, receiver=2))),
        "fewer than t holders": replace(honest, shares=honest.shares[: T - 2]),
    }[case]
    client = cohort.clients[1]
    before = snapshot(client)

    with pytest.raises(ProtocolError):
        client.handle(forged)

    assert snapshot(client) == before
    client.handle(honest)
    assert client.phase is ClientPhase.MASK


def test_exactly_t_share_holders_are_enough() -> None:
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    honest = _relay(cohort)
    client = cohort.clients[1]

    client.handle(replace(honest, shares=honest.shares[: T - 1]))  # itself and t - 1 others

    assert client.phase is ClientPhase.MASK


@pytest.mark.parametrize("values", [np.zeros(3, np.int64), np.zeros(4, np.float64),
                                    np.array([0, 0, 0, -1]), "too big"])
def test_an_input_of_the_wrong_shape_type_or_range_is_refused_before_masking(values: object) -> None:
    spec = make_spec(n=N, threshold=T, dim=4)
    cohort = Cohort(spec)
    client = cohort.clients[1]
    client.handle(_relay(cohort))
    if isinstance(values, str):
        values = np.array([0, 0, 0, spec.config.levels + 1])
    before = snapshot(client)

    with pytest.raises(ValueError):
        client.mask_input(values)  # type: ignore[arg-type]

    assert snapshot(client) == before
    assert client.mask_input(np.array([0, 1, 2, spec.config.levels])).sender == 1  # the top: ok


@pytest.mark.parametrize("client_id", [0, N + 1])
def test_a_client_id_outside_the_round_is_refused(client_id: int) -> None:
    with pytest.raises(ValueError):
        SecAggClient(make_spec(n=N, threshold=T, dim=4), client_id)


def test_a_consistency_request_with_unsorted_survivors_is_refused_and_changes_nothing() -> None:
    from fedcore.secagg.messages import ConsistencyRequest

    from .conftest import signed_cohort

    cohort = signed_cohort(n=6, threshold=5)
    requests = advance(cohort, ServerPhase.COLLECT_SIGNATURES)
    honest = next(m for m in requests if isinstance(m, ConsistencyRequest))
    client = cohort.clients[honest.recipient]
    before = snapshot(client)
    assert list(honest.survivors) == sorted(honest.survivors)

    with pytest.raises(ProtocolError):
        client.handle(replace(honest, survivors=tuple(reversed(honest.survivors))))

    assert snapshot(client) == before
    assert client.handle(honest)  # the honest request is still signed


def test_the_cohort_times_are_real_durations() -> None:
    import os
    import time

    start = time.perf_counter()
    cohort = Cohort(make_spec(n=N, threshold=T, dim=4))
    cohort.run({c: np.zeros(4, np.int64) for c in cohort.spec.clients})
    elapsed = time.perf_counter() - start

    assert 0 < cohort.server_seconds <= elapsed
    assert 0 <= cohort.server_cpu_seconds <= elapsed * (os.cpu_count() or 1)  # threads add up
    assert all(0 < s <= elapsed for s in cohort.client_seconds.values())
    assert sum(cohort.client_seconds.values()) + cohort.server_seconds <= elapsed
