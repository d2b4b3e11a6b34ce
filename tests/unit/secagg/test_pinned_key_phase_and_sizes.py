"""The key phase closed with fewer than t advertised keys aborts the round at once (no key list
goes out); and `wire_size` counts payload bytes only: bytes as they are, ids as 4 bytes, nested
fields summed, nothing for an empty tuple."""

from __future__ import annotations

from fedcore.secagg.cohort import Cohort
from fedcore.secagg.messages import OwnedShare, UnmaskShares, wire_size
from fedcore.secagg.server import Phase as ServerPhase

from .conftest import make_spec


def test_too_few_advertised_keys_abort_at_the_end_of_the_key_phase() -> None:
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    for c in (1, 2):
        assert cohort.server.handle(cohort.clients[c].advertise_keys()) == []
    out = cohort.server.end_phase()
    assert cohort.server.phase is ServerPhase.ABORTED
    assert out == []


def test_enough_advertised_keys_move_on_to_the_shares() -> None:
    cohort = Cohort(make_spec(n=5, threshold=3, dim=4))
    for c in (1, 2, 3):
        cohort.server.handle(cohort.clients[c].advertise_keys())
    out = cohort.server.end_phase()
    assert cohort.server.phase is ServerPhase.COLLECT_SHARES
    assert sorted(m.recipient for m in out) == [1, 2, 3]  # type: ignore[attr-defined]


def test_wire_size_counts_payload_bytes_only() -> None:
    assert wire_size(()) == 0
    assert wire_size((b"abc", 7)) == 3 + 4
    msg = UnmaskShares(sender=2, seed_shares=(OwnedShare(owner=1, share=b"x" * 36),),
                       key_shares=())
    assert wire_size(msg) == 4 + (4 + 36)
