"""BackgroundClient without a coordinator: state directory ownership and start/stop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.client import (
    BackgroundClient,
    ClientPhase,
    FitResult,
    FunctionalApp,
    StateDir,
    StateError,
)

NOWHERE = "127.0.0.1:1"  # nothing listens: the client backs off until stopped


def app() -> FunctionalApp:
    return FunctionalApp(get_parameters=lambda: {"w": np.zeros(2)},
                         fit=lambda p, c: FitResult(params=dict(p), num_examples=1))


def test_two_clients_on_one_state_dir_are_refused_at_start(tmp_path: Path) -> None:
    first = BackgroundClient(app(), NOWHERE, state_dir=tmp_path / "s")
    first.start()
    second = BackgroundClient(app(), NOWHERE, state_dir=tmp_path / "s")

    with pytest.raises(StateError, match="in use"):
        second.start()
    assert first.stop(timeout=10)
    assert first.status.phase is ClientPhase.STOPPED
    second.start()  # the lock went with the first client
    assert second.stop(timeout=10)


def test_a_state_dir_passed_open_is_shared_and_left_open(tmp_path: Path) -> None:
    with StateDir.open(tmp_path / "s") as state:
        client = BackgroundClient(app(), NOWHERE, state_dir=state, client_id="site-1")
        client.start()

        assert client.stop(timeout=10)
        assert not state.closed and state.client_id() == "site-1"
        state.write_bytes("identity_key", b"k")  # still ours to write


def test_stop_before_start_and_twice_is_harmless() -> None:
    client = BackgroundClient(app(), NOWHERE)

    assert client.stop(timeout=1) and client.status.phase is ClientPhase.IDLE
    client.start()
    assert client.stop(timeout=10) and client.stop(timeout=10)
