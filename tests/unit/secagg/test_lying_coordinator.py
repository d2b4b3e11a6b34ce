"""A lying coordinator, searching its strategies over many rounds, never reads an honest
client's input from a signed round; the same search does read inputs where it should."""

from __future__ import annotations

import random
from unittest import mock

import pytest

from fedcore.secagg import safety
from fedcore.secagg.client import SecAggClient
from fedcore.secagg.config import Mode, SecAggConfig
from fedcore.secagg.messages import UnmaskRequest

from .lying_coordinator import STRATEGIES, LyingCoordinator, Outcome, Setting


def _least(n: int, mode: Mode, degree: int) -> int:
    config = SecAggConfig(threshold=1, max_clients=n, clip=1.0, mode=mode, degree=degree)
    return safety.least_signed_threshold(config, n)


def _search(setting: Setting, tries: int, *, seed: int = 0, client=SecAggClient) -> list[Outcome]:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    coordinator = LyingCoordinator(setting, client=client)
    return [coordinator.attack(strategy, rng)
            for _ in range(tries) for strategy in STRATEGIES]


SIGNED = [
    Setting(n=10, threshold=_least(10, Mode.FULL, 0), signed=True),
    Setting(n=16, threshold=_least(16, Mode.FULL, 0), signed=True),
    Setting(n=24, threshold=_least(24, Mode.SECAGG_PLUS, 4), signed=True,
            mode=Mode.SECAGG_PLUS, degree=4),
    Setting(n=30, threshold=_least(30, Mode.SECAGG_PLUS, 6), signed=True,
            mode=Mode.SECAGG_PLUS, degree=6),
    Setting(n=40, threshold=_least(40, Mode.SECAGG_PLUS, 8), signed=True,
            mode=Mode.SECAGG_PLUS, degree=8),
    Setting(n=60, threshold=_least(60, Mode.SECAGG_PLUS, 12), signed=True,
            mode=Mode.SECAGG_PLUS, degree=12),
    Setting(n=112, threshold=_least(112, Mode.SECAGG_PLUS, 12), signed=True,
            mode=Mode.SECAGG_PLUS, degree=12),
]


@pytest.mark.parametrize("setting", SIGNED, ids=lambda s: f"{s.mode.value}-n{s.n}-k{s.degree}-t{s.threshold}")
def test_a_lying_coordinator_never_reads_an_input_of_a_signed_round(setting: Setting) -> None:
    outcomes = _search(setting, tries=2)

    assert not any(o.recovered for o in outcomes)
    assert all(o.seed_shares < setting.threshold or o.pair_seeds < o.masked_with
               for o in outcomes)


@pytest.mark.parametrize("setting", [
    Setting(n=10, threshold=4, signed=False),
    Setting(n=12, threshold=6, signed=False),
    Setting(n=30, threshold=3, signed=False, mode=Mode.SECAGG_PLUS, degree=4),
], ids=lambda s: f"{s.mode.value}-n{s.n}-t{s.threshold}")
def test_the_search_reads_an_input_of_an_unsigned_round_with_t_at_most_half(setting: Setting) -> None:
    """Unsigned rounds defend only against a coordinator that follows the protocol."""
    outcomes = _search(setting, tries=2)

    assert any(o.recovered for o in outcomes)


class _GlobalCountClient(SecAggClient):
    """The client before this check existed: t survivors and t signatures, round-wide."""

    def _check_survivor_view(self, got: str, survivors: tuple[int, ...]) -> None:
        if self._id not in survivors:
            raise self._refuse(got, "this client is not listed as a survivor")
        if not set(survivors) & self._holders <= self._received.keys() | {self._id}:
            raise self._refuse(got, "lists survivors this client never received shares from")
        if len(survivors) < self._spec.config.threshold:
            raise self._refuse(got, "too few survivors")

    def _check_signed_survivors(self, msg: UnmaskRequest) -> None:
        signed = set(self._signed_survivors)
        if not set(msg.survivors) <= signed or set(msg.dropped) & signed:
            raise self._refuse("UnmaskRequest", "contradicts the survivor list this client signed")
        if len(self._valid_signers(msg.signatures, signed)) < self._spec.config.threshold:
            raise self._refuse("UnmaskRequest", "too few valid survivor signatures")


def _global_count_client(spec, client_id, *, identity_key=None):  # type: ignore[no-untyped-def]
    with mock.patch.object(safety, "check_signed", lambda spec: None):
        return _GlobalCountClient(spec, client_id, identity_key=identity_key)


def test_the_search_finds_the_reviewed_attack_on_the_old_signed_secagg_plus_client() -> None:
    """Signatures counted round-wide and t = 2/3 of a neighbourhood (k = 12, t = 9): it wins."""
    old = Setting(n=200, threshold=9, signed=True, mode=Mode.SECAGG_PLUS, degree=12)
    rng = random.Random(0)

    attacked = LyingCoordinator(old, client=_global_count_client).attack("spread", rng)

    assert attacked.recovered
    assert LyingCoordinator(old).attack("spread", rng).refused_setup  # today's client: t too low
    now = Setting(n=200, threshold=_least(200, Mode.SECAGG_PLUS, 12), signed=True,
                  mode=Mode.SECAGG_PLUS, degree=12)
    assert not any(LyingCoordinator(now).attack(strategy, rng).recovered
                   for strategy in STRATEGIES)
