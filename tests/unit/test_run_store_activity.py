"""runs.sqlite's last_seen follows a client's activity, not only its joins."""

from __future__ import annotations

from pathlib import Path

from fedcore.storage.run_store import RunStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_activity_moves_last_seen_at_most_every_interval(tmp_path: Path) -> None:
    clock = Clock()
    store = RunStore(tmp_path / "runs.sqlite", wall_clock=clock, activity_every_s=10.0)
    store.client_joined("a", "ipv4:127.0.0.1:5")

    clock.now = 1005.0
    store.client_active("a")
    soon = store.clients()[0]["last_seen"]
    clock.now = 1012.0
    store.client_active("a")
    later = store.clients()[0]
    store.close()

    assert soon == 1000.0
    assert (later["first_seen"], later["last_seen"], later["joins"]) == (1000.0, 1012.0, 1)


def test_activity_of_a_client_never_joined_adds_no_row(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")

    store.client_active("stranger")

    assert store.clients() == []
    store.close()
