"""The client state directory: owner-only, atomic, locked, one directory per client."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from fedcore.client import ResumeInfo, StateDir, StateError
from fedcore.dp.opacus import HistoryEntry
from fedcore.storage.accountant_file import FILE_NAME, open_accountant


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_directory_is_0700_and_every_file_0600(tmp_path: Path) -> None:
    with StateDir.open(tmp_path / "a" / "state") as state:
        state.write_bytes("identity_key", b"\x01" * 32)
        state.client_id("site-1")
        state.save_resume(ResumeInfo(last_round=3))

        assert mode(state.path) == 0o700
        assert {p.name: mode(p) for p in state.path.iterdir()} == {
            "identity_key": 0o600, "client_id": 0o600, "resume.json": 0o600, "lock": 0o600}


def test_an_open_directory_is_tightened_to_its_owner(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)

    with StateDir.open(loose):
        assert mode(loose) == 0o700


def test_write_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    with StateDir.open(tmp_path / "s") as state:
        state.write_bytes("blob", b"old")
        state.write_bytes("blob", b"new")

        assert state.read_bytes("blob") == b"new"
        assert state.read_bytes("never-written") is None
        assert sorted(p.name for p in state.path.iterdir()) == ["blob", "lock"]


def test_temp_files_of_a_killed_writer_are_removed_on_open(tmp_path: Path) -> None:
    directory = tmp_path / "s"
    StateDir.open(directory).close()
    (directory / ".tmp-resume.json.dead").write_bytes(b'{"trunc')

    with StateDir.open(directory) as state:
        assert not list(state.path.glob(".tmp-*"))


def test_second_instance_on_the_same_directory_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    first = StateDir.open(tmp_path / "s")

    with pytest.raises(StateError, match=f"in use by another fedcore client \\(pid {os.getpid()}"):
        StateDir.open(tmp_path / "s")
    first.close()
    StateDir.open(tmp_path / "s").close()


def test_instances_with_different_directories_do_not_interfere(tmp_path: Path) -> None:
    def use(name: str, out: dict[str, str]) -> None:
        with StateDir.open(tmp_path / name) as state:
            out[name] = state.client_id(name)
            for k in range(20):
                state.write_json("counter.json", {"k": k, "who": name})

    out: dict[str, str] = {}
    threads = [threading.Thread(target=use, args=(f"c{i}", out)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for i in range(4):
        with StateDir.open(tmp_path / f"c{i}") as state:
            assert state.client_id() == f"c{i}"
            assert state.read_json("counter.json") == {"k": 19, "who": f"c{i}"}


def test_client_id_persists_and_a_different_one_is_refused(tmp_path: Path) -> None:
    with StateDir.open(tmp_path / "s") as state:
        generated = state.client_id()
    with StateDir.open(tmp_path / "s") as state:
        assert state.client_id() == generated
        assert state.client_id(generated) == generated
        with pytest.raises(StateError, match="belongs to client"):
            state.client_id("someone-else")


def test_resume_info_round_trips_and_garbage_is_reported(tmp_path: Path) -> None:
    info = ResumeInfo(last_round=7, last_task_id="t9", tasks_reported=4, interrupted_task_id="t10")
    with StateDir.open(tmp_path / "s") as state:
        assert state.resume() == ResumeInfo()
        state.save_resume(info)
        assert state.resume() == info
        state.write_json("resume.json", {"format": 1, "last_round": "seven"})
        with pytest.raises(StateError, match="unexpected fields"):
            state.resume()
        state.write_bytes("resume.json", b"{not json")
        with pytest.raises(StateError, match="not valid JSON"):
            state.resume()


@pytest.mark.parametrize("name", ["lock", "../escape", ".hidden", "a/b", "", "x" * 200])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    with StateDir.open(tmp_path / "s") as state, pytest.raises(ValueError, match="state file"):
        state.path_for(name)


def test_closed_directory_refuses_writes(tmp_path: Path) -> None:
    state = StateDir.open(tmp_path / "s")
    state.close()

    with pytest.raises(StateError, match="closed"):
        state.write_bytes("blob", b"x")


def test_the_privacy_accountant_lives_at_path_for(tmp_path: Path) -> None:
    with StateDir.open(tmp_path / "s") as state:
        accountant = open_accountant(state.path)
        accountant.record(HistoryEntry(noise_multiplier=1.0, sample_rate=0.1, steps=3))

        assert state.path_for(FILE_NAME).exists()
